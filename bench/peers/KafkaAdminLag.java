// Peer for the Kafka lag benchmark (`tidal-bench kafka`, scripts/bench-kafka.sh): one lag
// round with Apache Kafka's own Java Admin client, the calls kminion makes (ListGroups,
// DescribeGroups, OffsetFetch batched per coordinator, ListOffsets latest + earliest), in a
// warm JVM.
// Prints the same JSON line as the Tidal side of the benchmark (bench/src/kafka/driver.rs).
import java.lang.management.ManagementFactory;
import java.util.*;
import java.util.stream.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;

public class KafkaAdminLag {
    static long cpuNanos() {
        return ((com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean()).getProcessCpuTime();
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        int rounds = Integer.parseInt(args[1]);
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(props)) {
            long[] lastLag = {0};
            int[] last = {0, 0};
            Runnable round = () -> {
                try {
                    List<String> ids = admin.listConsumerGroups().all().get().stream()
                        .map(ConsumerGroupListing::groupId).collect(Collectors.toList());
                    admin.describeConsumerGroups(ids).all().get();
                    Map<String, ListConsumerGroupOffsetsSpec> specs = new HashMap<>();
                    for (String id : ids) specs.put(id, new ListConsumerGroupOffsetsSpec());
                    Map<String, Map<TopicPartition, OffsetAndMetadata>> offsets =
                        admin.listConsumerGroupOffsets(specs).all().get();
                    Set<TopicPartition> tps = new HashSet<>();
                    offsets.values().forEach(m -> tps.addAll(m.keySet()));
                    Map<TopicPartition, OffsetSpec> latest = new HashMap<>(), earliest = new HashMap<>();
                    for (TopicPartition tp : tps) { latest.put(tp, OffsetSpec.latest()); earliest.put(tp, OffsetSpec.earliest()); }
                    Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> ends = admin.listOffsets(latest).all().get();
                    admin.listOffsets(earliest).all().get();
                    long lag = 0; int groups = 0, parts = 0;
                    for (Map.Entry<String, Map<TopicPartition, OffsetAndMetadata>> g : offsets.entrySet()) {
                        if (!g.getKey().startsWith("bench-g-")) continue;
                        groups++;
                        for (Map.Entry<TopicPartition, OffsetAndMetadata> e : g.getValue().entrySet()) {
                            if (e.getValue() == null) continue;
                            lag += Math.max(0, ends.get(e.getKey()).offset() - e.getValue().offset());
                            parts++;
                        }
                    }
                    lastLag[0] = lag; last[0] = groups; last[1] = parts;
                } catch (Exception e) { throw new RuntimeException(e); }
            };
            for (int i = 0; i < 3; i++) round.run();
            long cpu0 = cpuNanos();
            double[] times = new double[rounds];
            for (int i = 0; i < rounds; i++) {
                long t0 = System.nanoTime();
                round.run();
                times[i] = (System.nanoTime() - t0) / 1e9;
            }
            double cpu = (cpuNanos() - cpu0) / 1e9;
            Arrays.sort(times);
            double med = times[(int) Math.round((rounds - 1) * 0.5)], p90 = times[(int) Math.round((rounds - 1) * 0.9)];
            System.out.printf(Locale.ROOT,
                "{\"peer\":\"kafka-java-admin\",\"rounds\":%d,\"median_ms\":%.3f,\"p90_ms\":%.3f,\"cpu_seconds\":%.4f,\"cpu_ms_per_round\":%.3f,\"groups\":%d,\"group_partitions\":%d,\"total_lag\":%d}%n",
                rounds, med * 1e3, p90 * 1e3, cpu, cpu * 1e3 / rounds, last[0], last[1], lastLag[0]);
        }
    }
}
