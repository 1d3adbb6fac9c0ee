"""Horovod embedded in an MPI program: ``hvd.init(comm=...)`` on mpi4py sub-communicators, with DistQ.

``mpirun -np 4`` runs tests/parallel/mpi4py_subworld_check.py, which splits the world into two
sub-worlds of 2 ranks, each training with DistQ on its own Horovod, checked against mpi4py.
"""

from __future__ import annotations

import re
import shutil
import sys

from tests.launch import OUTPUT_TAG, ranks_stdout, run_until

# Open MPI refuses root without the flag; 4 ranks on 2 cores need --oversubscribe, and binding
# would pin two ranks to one core. --tag-output lets ranks_stdout() tell the ranks apart.
MPIRUN = [shutil.which("mpirun") or "mpirun", "-np", "4", "--allow-run-as-root", "--oversubscribe",
          "--bind-to", "none", "--tag-output"]
CHECK = [sys.executable, "-m", "tests.parallel.mpi4py_subworld_check"]
SUCCESS = re.compile(r"sub-world (\d), rank (\d)\): Horovod rank (\d) of 2, .* checksum (\S+)")
# Seconds: a run took 45-65 s here (4 ranks importing torch on 2 cores shared with other tests,
# load 7-9), so only a hang reaches it.
TIMEOUT = 240


def test_two_sub_worlds_train_independently_and_match_mpi4py() -> None:
    """Every rank reports its sub-world's rank as Horovod's; each sub-world's ranks end equal, the two differ."""
    command, stdout, stderr, problem = run_until([*MPIRUN, *CHECK], TIMEOUT)
    assert problem is None, f"{' '.join(command)} {problem}:\n{(stdout + stderr)[-6000:]}"
    lines = {rank: SUCCESS.findall(text) for rank, text in ranks_stdout(stdout).items()}
    assert sorted(lines) == [0, 1, 2, 3] and all(len(found) == 1 for found in lines.values()), stdout
    found = {rank: found[0] for rank, found in lines.items()}
    for rank, (color, sub_rank, horovod_rank, _) in found.items():
        assert (int(color), int(sub_rank), int(horovod_rank)) == (rank // 2, rank % 2, rank % 2), found
    checksums = [checksum for *_, checksum in (found[rank] for rank in range(4))]
    assert checksums[0] == checksums[1] and checksums[2] == checksums[3] and checksums[0] != checksums[2], found


def test_a_wrong_reference_fails_the_job() -> None:
    """The same run with world rank 3's reference perturbed must end every rank with the mismatch."""
    command, stdout, stderr, problem = run_until([*MPIRUN, "-x", "DISTQ_MPI4PY_PERTURB=1", *CHECK], TIMEOUT)
    output = stdout + stderr
    assert problem is not None and problem.startswith("exited"), f"{' '.join(command)}: {problem}\n{output[-6000:]}"
    assert "MISMATCH: world rank 3 (sub-world 1, rank 1): 0.weight step 0: reduced gradient " \
           "differs from the mpi4py reference" in rank_stderr(stderr, 3), output[-6000:]


def rank_stderr(output: str, rank: int) -> str:
    """One rank's standard error, put back together from mpirun's tagged pieces (which may split lines)."""
    parts = OUTPUT_TAG.split(output)  # text before the first tag, then (rank, stream, text) for each tag
    return "".join(text for tagged, stream, text in zip(parts[1::3], parts[2::3], parts[3::3])
                   if int(tagged) == rank and stream == "stderr")
