"""Apache Kafka by hand, as the suite starts it: `python -m tests.run_kafka [--port N]`.

A one-node KRaft broker on loopback (its jars fetched once with Maven, tests/kafka.py), its
data in a temporary folder removed on Ctrl-C.
"""

import argparse
import signal
import sys
import tempfile
from pathlib import Path

from tests import kafka


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, help="the client port (default: a free one)")
    args = parser.parse_args()
    try:
        java, mvn = kafka.tools()
        jars = kafka.kafka_jars(mvn)
    except kafka.Unavailable as why:
        print(f"no Apache Kafka here: {why}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="kafka-") as workdir:
        node = kafka.KafkaNode(java, jars, Path(workdir))
        if args.port:
            node.port = args.port
        node.start()
        print(f"Apache Kafka {kafka.KAFKA_VERSION} on {node.bootstrap} (log: {node.log_path}); "
              f"Ctrl-C stops it", flush=True)
        try:
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
        finally:
            node.stop()
    return 0


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    sys.exit(main())
