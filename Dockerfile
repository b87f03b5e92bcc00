# packd's container image: one static binary on an empty base.
#
# Two ways to get the binary into it:
#   docker build -t packd .
#       compiles it in a Rust image (needs a registry to pull that image from);
#   podman build --build-arg BINARY=host -t packd .
#       takes a binary built on this machine, staged in target/image-root/
#       (the README's Deploy section shows how; CI builds the image this way).
#
# The image holds nothing but the binary and an empty data directory owned by
# the unprivileged user it runs as, so there is no shell, no package manager
# and no libc to patch.

ARG BINARY=build

FROM docker.io/library/rust:1.95-slim-bookworm AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
COPY . .
# Static (glibc linked in), so the binary runs on `scratch`; the target is
# named explicitly because crt-static is only honoured with --target.
RUN target="$(rustc -vV | sed -n 's/^host: //p')" \
    && RUSTFLAGS="-C target-feature=+crt-static" \
       cargo build --release --locked --target "$target" \
    && mkdir -p /rootfs/usr/local/bin /rootfs/var/lib/packd \
    && cp "target/$target/release/packd" /rootfs/usr/local/bin/packd

FROM scratch AS host
COPY target/image-root/ /rootfs/

# The stage named by --build-arg BINARY.
# hadolint ignore=DL3006
FROM ${BINARY} AS binary

FROM scratch
LABEL org.opencontainers.image.title="packd" \
      org.opencontainers.image.description="A self-hosted service for managing software packages" \
      org.opencontainers.image.licenses="MIT"
COPY --from=binary /rootfs/usr/local/bin/packd /usr/local/bin/packd
COPY --from=binary --chown=65532:65532 /rootfs/var/lib/packd /var/lib/packd
# The commented configuration file, all defaults; mount your own over it
# (`-v ./packd.toml:/etc/packd/packd.toml:ro`) and `docker kill -s HUP`
# reloads it.
COPY packaging/packd.toml /etc/packd/packd.toml
# Settings come from the file and PACKD_* variables (which rank above it);
# these make the image useful as is: listen on every interface of the
# container, keep the data in the volume.
ENV PACKD_CONFIG=/etc/packd/packd.toml \
    PACKD_LISTEN=0.0.0.0:8080 \
    PACKD_DB=/var/lib/packd/packd.redb \
    PACKD_DATA_DIR=/var/lib/packd/data
USER 65532:65532
VOLUME ["/var/lib/packd"]
EXPOSE 8080
# packd itself is the probe: there is no curl in the image.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/packd", "healthcheck"]
# packd runs as PID 1 and handles SIGTERM itself: it drains requests in
# flight, saves operation progress and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/packd"]
CMD ["serve"]
