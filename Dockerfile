# Build stage: compile the release binary.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p herald --bin herald

# Runtime stage: a small image with the binary, the default config and the demo snapshot.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /var/lib/herald --create-home herald
COPY --from=build /src/target/release/herald /usr/local/bin/herald
COPY config /etc/herald
USER herald
WORKDIR /var/lib/herald
# The demo key is refused on 0.0.0.0: run with -e HERALD_API_KEYS=key1,key2 (or, for a demo on
# purpose, -e HERALD_ALLOW_DEMO_KEY=1).
ENV HERALD_LISTEN=0.0.0.0:8080 HERALD_DATA_DIR=/var/lib/herald/data
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["herald", "serve", "--config", "/etc/herald/herald.toml"]
