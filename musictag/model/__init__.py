"""Models: the architectures (Keras layers and keras.ops only), their training with crash recovery, the
Keras backends, and the CPU speed-ups applied by one call outside the architectures."""
