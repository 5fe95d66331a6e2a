"""The job's heart: plain functions over one batch of orders, no faust, no Kafka."""
