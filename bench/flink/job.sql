-- orderstream's job in Flink SQL, for `make bench` (bench/flink.py runs it with PyFlink,
-- bench/flink/job.py fills in the $names). The same job as the Kafka Streams peer
-- (bench/kstreams): per buyer the count and sum of prices, to the totals topic; per buyer and
-- window of tumble 10 s and hop 1 m / 10 s the count, sum, min and max, to the results topic.
-- Event time is the order's `order_time`. Prices are integer cents, so sums are exact.

-- The orders: JSON, as datagen writes them. `price` is an exact decimal string, which
-- Flink's JSON format reads into a DECIMAL. The watermark's delay is the peers' grace (the
-- input's event-time span plus the hop's size, bench/pipelines/quix_windows.py grace_ms):
-- no order is late and no window closes before the input ends, as on the peers.
CREATE TABLE orders (
  order_number BIGINT,
  price DECIMAL(12, 2),
  buyer ROW<first_name STRING, last_name STRING>,
  order_time TIMESTAMP_LTZ(3),
  WATERMARK FOR order_time AS order_time - INTERVAL '$watermark_delay' DAY TO SECOND(3)
) WITH (
  'connector' = 'kafka',
  'topic' = '$input_topic',
  'properties.bootstrap.servers' = '$broker',
  'properties.group.id' = '$group',
  'scan.startup.mode' = 'earliest-offset',
  'format' = 'json',
  'json.timestamp-format.standard' = 'ISO-8601'
);

-- What the job reads of an order: its buyer (both names, with a separator no name
-- contains, as bench/pipelines/job.py buyer_key) and its price in integer cents.
CREATE TEMPORARY VIEW priced AS
SELECT
  CONCAT(buyer.first_name, CHR(31), buyer.last_name) AS buyer,
  CAST(price * 100 AS BIGINT) AS cents,
  order_time
FROM orders;

-- Buyer totals: an upsert table keyed by buyer, {"count": ..., "cents": ...} as the
-- Kafka Streams peer writes them.
CREATE TABLE buyer_totals (
  buyer STRING,
  `count` BIGINT,
  cents BIGINT,
  PRIMARY KEY (buyer) NOT ENFORCED
) WITH (
  'connector' = 'upsert-kafka',
  'topic' = '$totals_topic',
  'properties.bootstrap.servers' = '$broker',
  'key.format' = 'raw',
  'value.format' = 'json',
  'value.fields-include' = 'EXCEPT_KEY',
  'sink.delivery-guarantee' = '$delivery_guarantee',
  'sink.transactional-id-prefix' = '$group-totals',
  'properties.transaction.timeout.ms' = '$transaction_timeout_ms'
);

-- Closed windows, keyed by buyer: {"window", "start" (epoch ms), "count", "sum", "min",
-- "max"}, as the Kafka Streams peer writes them.
CREATE TABLE window_results (
  buyer STRING,
  `window` STRING,
  `start` BIGINT,
  `count` BIGINT,
  `sum` BIGINT,
  `min` BIGINT,
  `max` BIGINT
) WITH (
  'connector' = 'kafka',
  'topic' = '$results_topic',
  'properties.bootstrap.servers' = '$broker',
  'key.format' = 'raw',
  'key.fields' = 'buyer',
  'value.format' = 'json',
  'value.fields-include' = 'EXCEPT_KEY',
  'sink.delivery-guarantee' = '$delivery_guarantee',
  'sink.transactional-id-prefix' = '$group-windows',
  'properties.transaction.timeout.ms' = '$transaction_timeout_ms'
);

EXECUTE STATEMENT SET
BEGIN

INSERT INTO buyer_totals
SELECT buyer, COUNT(*), SUM(cents)
FROM priced
GROUP BY buyer;

INSERT INTO window_results
SELECT buyer, 'tumble_10s', 1000 * CAST(TIMESTAMPDIFF(SECOND, TIMESTAMP '1970-01-01 00:00:00',
       window_start) AS BIGINT), COUNT(*), SUM(cents), MIN(cents), MAX(cents)
FROM TABLE(TUMBLE(TABLE priced, DESCRIPTOR(order_time), INTERVAL '10' SECOND))
GROUP BY buyer, window_start, window_end
UNION ALL
SELECT buyer, 'hop_1m_10s', 1000 * CAST(TIMESTAMPDIFF(SECOND, TIMESTAMP '1970-01-01 00:00:00',
       window_start) AS BIGINT), COUNT(*), SUM(cents), MIN(cents), MAX(cents)
FROM TABLE(HOP(TABLE priced, DESCRIPTOR(order_time), INTERVAL '10' SECOND, INTERVAL '60' SECOND))
GROUP BY buyer, window_start, window_end;

END;
