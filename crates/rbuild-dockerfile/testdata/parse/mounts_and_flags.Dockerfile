# syntax=docker/dockerfile:1.7
ARG GO_VERSION=1.22 BASE
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
RUN --mount=type=cache,target=/root/.cache/go-build,sharing=locked,id=gobuild \
    --mount=type=bind,source=go.mod,target=/src/go.mod \
    --mount=type=secret,id=token,env=TOKEN,required \
    --mount=type=ssh \
    --mount=type=tmpfs,target=/tmp,size=64m \
    --network=none --security=sandbox \
    go build ./...
RUN --mount=type=cache,target=$CACHE,uid=$UID --device=vendor.com/gpu=all,required echo deferred
COPY --from=build --chown=1000:1000 --chmod=u+rwx,go-w --link --parents --exclude=*.md --exclude=docs/ a b /dst/
ADD --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d --keep-git-dir --unpack=false https://example.com/x.tar /x/
COPY ["file with spaces", "/dst dir/"]
FROM scratch
COPY --from=0 /bin/app /app
