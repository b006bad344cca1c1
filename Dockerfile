# sockudo container image. Operating notes: tuning.md ("Running as a service").
#
#   docker build -t sockudo .
#   docker run -d --name sockudo \
#     --security-opt seccomp=unconfined \
#     --ulimit memlock=-1 --ulimit nofile=1048576:1048576 \
#     --stop-timeout 30 \
#     -p 6001:6001 -p 9601:9601 \
#     -v sockudo-data:/var/lib/sockudo \
#     -v "$PWD/config.toml:/etc/sockudo/config.toml:ro" \
#     sockudo --config /etc/sockudo/config.toml
#
# Why the flags:
# - seccomp=unconfined: the server runs on io_uring. Docker's default seccomp profile blocks
#   io_uring_setup, io_uring_enter and io_uring_register since Docker 25.0 (moby/moby#46762;
#   containerd 2.0's default does the same, containerd/containerd#9320), and without them no
#   shard starts. Instead of unconfined you can pass a copy of the default profile with those
#   three syscalls added: --security-opt seccomp=/path/to/profile.json.
# - memlock=-1: io_uring rings and registered buffers are charged to RLIMIT_MEMLOCK (about
#   2.5 to 7.5 MiB per shard); the usual default (8 MiB, less on older hosts) is not enough
#   for more than one shard, and the server then runs slower, or does not start.
# - nofile: one file descriptor per connection.
# - --stop-timeout 30: `docker stop` waits 10 s by default before SIGKILL, which is exactly
#   the server's default shutdown_grace_period; give it more than the grace period.
# Without --config the server serves the development app (key app-key, secret app-secret).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p sockudo \
    && install -m 0755 target/release/sockudo /usr/local/bin/sockudo

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/sockudo \
        --shell /usr/sbin/nologin sockudo \
    && install -d -m 0700 -o sockudo -g sockudo /var/lib/sockudo
COPY --from=build /usr/local/bin/sockudo /usr/local/bin/sockudo
USER sockudo
# Created and owned by sockudo above, so a new named volume starts with that owner.
VOLUME /var/lib/sockudo
# 6001: WebSocket and HTTP API. 9601: metrics.
EXPOSE 6001 9601
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/sockudo", "--host", "0.0.0.0", "--data-dir", "/var/lib/sockudo"]
