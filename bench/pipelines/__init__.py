"""The programs a pipeline runs as a subprocess (Quix Streams, faust), and what they share."""
