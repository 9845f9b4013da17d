# shellcheck shell=bash
# scripts/stack/kafka.sh — Apache Kafka (KRaft): its build, its listeners (PLAINTEXT, SASL, SSL, mTLS) and their certificate.
# Sourced by scripts/stack.sh, which defines the versions, ports, paths and say/die/run_logged.

build_kafka() {
  [[ -f $KAFKA_DIR/.complete ]] && return 0
  command -v mvn >/dev/null || die "maven is required to fetch Apache Kafka"
  command -v java >/dev/null || die "java is required to run Apache Kafka"
  run_logged "kafka-$KAFKA_VERSION" _build_kafka
}

_build_kafka() {
  set -euo pipefail
  local work=$CACHE/src/kafka-$KAFKA_VERSION
  rm -rf "$work" "$KAFKA_DIR" && mkdir -p "$work" "$KAFKA_DIR/lib"
  cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.tidal</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
    <!-- Kafka declares slf4j-api 1.7; pin 2.x so the log4j2 binding below is found. -->
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>2.0.17</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>2.24.3</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>2.24.3</version></dependency>
  </dependencies>
</project>
EOF
  (cd "$work" && mvn -B -q dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$KAFKA_DIR/lib")
  [[ -f $KAFKA_DIR/lib/kafka_2.13-$KAFKA_VERSION.jar ]]
  touch "$KAFKA_DIR/.complete"
}

# A certificate for Kafka's SSL listener, signed by the stack CA (PEM keystore: PKCS#8 key
# followed by the certificate chain).
gen_kafka_cert() {
  local pki=$STATE/pki
  [[ -f $pki/kafka-keystore.pem ]] && return 0
  (
    cd "$pki"
    # The node IP too: a server of the tests that pods reach (a secured Prometheus) uses it.
    local san=IP:127.0.0.1,DNS:localhost
    node_enabled && san+=",IP:$NODE_IP"
    sign_cert ca kafka.key.rsa kafka.crt /CN=kafka serverAuth "$san"
    openssl pkcs8 -topk8 -nocrypt -in kafka.key.rsa -out kafka.key
    cat kafka.key kafka.crt ca.crt >kafka-keystore.pem
  )
}

up_kafka() {
  ports_free kafka "$KAFKA_PORT" "$KAFKA_SASL_PORT" "$KAFKA_CONTROLLER_PORT" "$KAFKA_SSL_PORT" "$KAFKA_MTLS_PORT" "$KAFKA_POD_PORT" "$KAFKA_POD_SASL_PORT"
  gen_kafka_cert
  gen_client_cert
  local dir=$STATE/kafka kafka_pod_listener=""
  # Pods on the real node reach the broker on the node IP (listeners of their own: plain, and
  # SASL with the same users as the local SASL listener).
  node_enabled && kafka_pod_listener=",POD://$NODE_IP:$KAFKA_POD_PORT,POD_SASL://$NODE_IP:$KAFKA_POD_SASL_PORT"
  mkdir -p "$dir"
  cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_PLAINTEXT://127.0.0.1:$KAFKA_SASL_PORT,SSL://127.0.0.1:$KAFKA_SSL_PORT,MTLS://127.0.0.1:$KAFKA_MTLS_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT$kafka_pod_listener
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_PLAINTEXT://127.0.0.1:$KAFKA_SASL_PORT,SSL://127.0.0.1:$KAFKA_SSL_PORT,MTLS://127.0.0.1:$KAFKA_MTLS_PORT$kafka_pod_listener
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL,MTLS:SSL,POD:PLAINTEXT,POD_SASL:SASL_PLAINTEXT
listener.name.ssl.ssl.keystore.type=PEM
listener.name.ssl.ssl.keystore.location=$STATE/pki/kafka-keystore.pem
listener.name.ssl.ssl.client.auth=none
listener.name.mtls.ssl.keystore.type=PEM
listener.name.mtls.ssl.keystore.location=$STATE/pki/kafka-keystore.pem
listener.name.mtls.ssl.truststore.type=PEM
listener.name.mtls.ssl.truststore.location=$STATE/pki/ca.crt
listener.name.mtls.ssl.client.auth=required
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_tidal="tidal-secret";
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.pod_sasl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_tidal="tidal-secret";
listener.name.pod_sasl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.pod_sasl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
group.initial.rebalance.delay.ms=0
num.partitions=1
auto.create.topics.enable=true
log.dirs=$STATE/data/kafka
EOF
  cat >"$dir/log4j2.properties" <<'EOF'
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = INFO
EOF
  local java_opts="-Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true -Dlog4j2.configurationFile=$dir/log4j2.properties"
  if ! running kafka && [[ ! -f $STATE/data/kafka/meta.properties ]]; then
    say "formatting kafka storage (KRaft) with SCRAM user 'tidal'"
    # shellcheck disable=SC2086
    java $java_opts -cp "$KAFKA_DIR/lib/*" kafka.tools.StorageTool format \
      -t "$(cat /proc/sys/kernel/random/uuid | tr -d - | head -c 22)" -c "$dir/server.properties" \
      --add-scram 'SCRAM-SHA-256=[name=tidal,password=tidal-secret]' \
      --add-scram 'SCRAM-SHA-512=[name=tidal,password=tidal-secret]' >"$(logfile kafka-format)" 2>&1 ||
      { tail -n 20 "$(logfile kafka-format)" >&2; die "kafka storage format failed"; }
  fi
  # shellcheck disable=SC2086
  start kafka java $java_opts -cp "$KAFKA_DIR/lib/*" kafka.Kafka "$dir/server.properties"
  wait_for kafka 120 kafka_ready
}

kafka_ready() {
  # The broker is ready when its PLAINTEXT listener accepts connections and the log says so.
  (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null &&
    grep -q "Kafka Server started" "$(logfile kafka)"
}
