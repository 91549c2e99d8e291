# escape=`
FROM busybox AS Base
LABEL maintainer "someone" version=1 `
      description="multi word"
LABEL a=b c="d e"
MAINTAINER me@example.com
ENV PATH /usr/local/bin:$PATH
ENV A=1 B="two words" C=three` four
EXPOSE 8080/tcp 53/udp 443
VOLUME ["/data", "/logs"]
VOLUME /cache /tmp/x
USER app:app
WORKDIR /srv/$A
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=1m30s --start-period=0s --start-interval=500ms --retries=3 `
  CMD curl -f http://localhost/ || exit 1
HEALTHCHECK NONE
HEALTHCHECK CMD ["/bin/check", "--quiet"]
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
CMD ["serve", "--port", "8080"]
ENTRYPOINT exec /entry.sh
ONBUILD COPY . /app/src
ARG VERSION
run echo lower-case keywords work
