package orderstream.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.math.BigDecimal;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.time.OffsetDateTime;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KGroupedStream;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.processor.TimestampExtractor;

/**
 * orderstream's job as a Kafka Streams user writes it, for `make bench`: orders (JSON) in;
 * per buyer the count and sum of prices (a KTable, to the totals topic); per buyer and
 * window of tumble 10 s and hop 1 m / 10 s the count, sum, min and max (windowed
 * aggregates in RocksDB, each emitted once when the window closes, to the results topic).
 * Event time is the order's `order_time`. Prices are integer cents, so sums are exact.
 *
 * <p>Settings come as the bench's BENCH_* environment variables (bench/pipelines/common.py).
 * It writes the bench's status file: the moment it consumed its first order on the
 * monotonic clock (System.nanoTime is CLOCK_MONOTONIC on Linux, which Python's
 * time.monotonic reads too), and how many it consumed.
 */
public final class OrdersJob {
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final AtomicLong CONSUMED = new AtomicLong();
  private static volatile double firstConsumedAt = -1;

  private OrdersJob() {}

  /** An order's event time, epoch ms, from its ISO-8601 `order_time`. */
  public static final class OrderTime implements TimestampExtractor {
    public OrderTime() {}

    @Override
    public long extract(ConsumerRecord<Object, Object> record, long partitionTime) {
      try {
        JsonNode order = JSON.readTree((String) record.value());
        return OffsetDateTime.parse(order.get("order_time").asText()).toInstant().toEpochMilli();
      } catch (Exception e) {
        return partitionTime;
      }
    }
  }

  /** An order as the aggregation needs it: price in cents; in a repartition topic as 8 bytes. */
  static Serde<Long> cents() {
    return Serdes.Long();
  }

  /** count, sum, min, max of cents, as 32 bytes: fixed-size state. */
  static final class Stats {
    long count;
    long sum;
    long min = Long.MAX_VALUE;
    long max = Long.MIN_VALUE;

    Stats add(long cents) {
      count++;
      sum += cents;
      min = Math.min(min, cents);
      max = Math.max(max, cents);
      return this;
    }

    static Serde<Stats> serde() {
      Serializer<Stats> out = (topic, s) -> ByteBuffer.allocate(32)
          .putLong(s.count).putLong(s.sum).putLong(s.min).putLong(s.max).array();
      Deserializer<Stats> in = (topic, bytes) -> {
        if (bytes == null) {
          return null;
        }
        ByteBuffer b = ByteBuffer.wrap(bytes);
        Stats s = new Stats();
        s.count = b.getLong();
        s.sum = b.getLong();
        s.min = b.getLong();
        s.max = b.getLong();
        return s;
      };
      return Serdes.serdeFrom(out, in);
    }
  }

  static long priceCents(String price) {
    return new BigDecimal(price).movePointRight(2).longValueExact();
  }

  static String buyerKey(JsonNode order) {
    JsonNode buyer = order.get("buyer");
    return buyer.get("first_name").asText() + "\u001f" + buyer.get("last_name").asText();
  }

  static void windowed(KGroupedStream<String, Long> byBuyer, String name, TimeWindows windows,
                       String resultsTopic) {
    byBuyer.windowedBy(windows)
        .aggregate(Stats::new, (buyer, cents, stats) -> stats.add(cents),
            Materialized.with(Serdes.String(), Stats.serde()))
        .suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded()))
        .toStream()
        .map((window, s) -> KeyValue.pair(window.key(), String.format(
            "{\"window\":\"%s\",\"start\":%d,\"count\":%d,\"sum\":%d,\"min\":%d,\"max\":%d}",
            name, window.window().start(), s.count, s.sum, s.min, s.max)))
        .to(resultsTopic, Produced.with(Serdes.String(), Serdes.String()));
  }

  public static void main(String[] args) throws Exception {
    String broker = System.getenv("BENCH_BROKER");
    String topic = System.getenv("BENCH_TOPIC");
    String group = System.getenv("BENCH_GROUP");
    long spanMs = Long.parseLong(System.getenv("BENCH_EVENT_SPAN_MS"));
    Path status = Path.of(System.getenv("BENCH_STATUS"));
    boolean exactlyOnce = "1".equals(System.getenv("BENCH_EXACTLY_ONCE"));

    Properties props = new Properties();
    props.put(StreamsConfig.APPLICATION_ID_CONFIG, group);
    props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, broker);
    props.put(StreamsConfig.STATE_DIR_CONFIG, System.getenv("BENCH_STATE_DIR"));
    props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 2);  // the machine's 2 cores
    props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG,
        exactlyOnce ? StreamsConfig.EXACTLY_ONCE_V2 : StreamsConfig.AT_LEAST_ONCE);
    props.put(StreamsConfig.DEFAULT_TIMESTAMP_EXTRACTOR_CLASS_CONFIG, OrderTime.class);
    props.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");

    // the windows' grace: the input's event-time span plus the hop's size, as the Quix
    // peer's (bench/pipelines/quix_windows.py grace_ms), so that no order is late and no
    // window closes before the input ends: both do the same work
    Duration grace = Duration.ofMillis(spanMs + 60_000);
    StreamsBuilder builder = new StreamsBuilder();
    KStream<String, String> orders = builder.stream(topic,
        Consumed.with(Serdes.String(), Serdes.String()));
    KGroupedStream<String, Long> byBuyer = orders
        .peek((key, value) -> consumed())
        .map((key, value) -> {
          try {
            JsonNode order = JSON.readTree(value);
            return KeyValue.pair(buyerKey(order), priceCents(order.get("price").asText()));
          } catch (Exception e) {
            throw new IllegalStateException("an order the bench wrote cannot be read", e);
          }
        })
        .groupByKey(Grouped.with(Serdes.String(), cents()));
    String totalsTopic = group + "-buyer-totals";
    byBuyer.aggregate(() -> new long[2], (buyer, cents, total) -> {
          total[0]++;
          total[1] += cents;
          return total;
        }, Materialized.with(Serdes.String(), Serdes.serdeFrom(
            (t, v) -> ByteBuffer.allocate(16).putLong(v[0]).putLong(v[1]).array(),
            (t, b) -> {
              ByteBuffer buffer = ByteBuffer.wrap(b);
              return new long[] {buffer.getLong(), buffer.getLong()};
            })))
        .toStream()
        .mapValues(total -> "{\"count\":" + total[0] + ",\"cents\":" + total[1] + "}")
        .to(totalsTopic, Produced.with(Serdes.String(), Serdes.String()));
    String resultsTopic = group + "-window-results";
    windowed(byBuyer, "tumble_10s", TimeWindows.ofSizeAndGrace(Duration.ofSeconds(10), grace),
        resultsTopic);
    windowed(byBuyer, "hop_1m_10s", TimeWindows.ofSizeAndGrace(Duration.ofSeconds(60), grace)
        .advanceBy(Duration.ofSeconds(10)), resultsTopic);

    KafkaStreams streams = new KafkaStreams(builder.build(), props);
    CountDownLatch stopped = new CountDownLatch(1);
    streams.setStateListener((now, before) -> {
      if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.NOT_RUNNING) {
        stopped.countDown();  // a failed app exits, and the bench says so at once
      }
    });
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      streams.close(Duration.ofSeconds(10));
      stopped.countDown();
    }));
    Thread reporter = new Thread(() -> {
      while (stopped.getCount() > 0) {
        writeStatus(status);
        try {
          Thread.sleep(250);
        } catch (InterruptedException e) {
          return;
        }
      }
    });
    reporter.setDaemon(true);
    reporter.start();
    streams.start();
    stopped.await();
    writeStatus(status);
    if (streams.state() == KafkaStreams.State.ERROR) {
      System.exit(1);
    }
  }

  private static void consumed() {
    if (CONSUMED.getAndIncrement() == 0) {
      firstConsumedAt = System.nanoTime() / 1e9;
    }
  }

  private static void writeStatus(Path status) {
    String text = firstConsumedAt < 0
        ? "{\"consumed\":" + CONSUMED.get() + "}"
        : "{\"first_consumed_at\":" + firstConsumedAt + ",\"consumed\":" + CONSUMED.get() + "}";
    try {
      Path staged = status.resolveSibling(status.getFileName() + ".tmp");
      Files.writeString(staged, text);
      Files.move(staged, status, StandardCopyOption.REPLACE_EXISTING,
          StandardCopyOption.ATOMIC_MOVE);
    } catch (Exception e) {
      // the bench reads the next one
    }
  }
}
