"""Audio in: the log-mel front end, decoding only the window kept, the checks a usable file passes, and the
worker pool that bounds each file's time and memory."""
