"""Features: log-mel spectrograms extracted into the spectrogram store, then written as TFRecord shards (one
module writes each format, one reads it)."""
