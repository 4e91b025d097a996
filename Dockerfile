# Builds vmm with the same build.sh as everywhere else, on Debian bookworm,
# and ships only the static binary.
FROM debian:bookworm AS build
WORKDIR /src
COPY . .
RUN ./build.sh

FROM scratch
COPY --from=build /src/vmm /vmm
ENTRYPOINT ["/vmm"]
