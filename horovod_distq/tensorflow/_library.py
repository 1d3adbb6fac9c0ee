"""Loads the compiled op library, with a readable error when it does not fit this TensorFlow."""

import tensorflow as tf

from horovod_distq._build import compiled_library

ops = tf.load_op_library(compiled_library("_tensorflow_ops", "TensorFlow", tf.__version__))
