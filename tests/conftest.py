"""Shared test settings: quiet TensorFlow, the TensorFlow backend, small thread pools."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
