# Multi-stage build of both binaries into one small image (distroless, non-root).
#   docker build -t ghcr.io/tidal-autoscaler/tidal:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p tidal-agent -p tidal-scaler \
 && install -m 0755 target/release/tidal-agent target/release/tidal-scaler /usr/local/bin/

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/tidal-agent /usr/local/bin/tidal-scaler /usr/local/bin/
USER 65534:65534
ENTRYPOINT ["/usr/local/bin/tidal-agent"]
