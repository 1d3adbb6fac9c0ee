// Portability macros shared by the host and device builds of the core.
#pragma once

#if defined(__CUDACC__)
#define DISTQ_HOST_DEVICE __host__ __device__
#else
#define DISTQ_HOST_DEVICE
#endif
