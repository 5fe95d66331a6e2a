"""faust agents: adapters that take batches from a topic, hand them to the job's heart
(core/), and send what comes back."""
