FROM debian
RUN apt-get update \
# a comment inside the continuation is dropped
    && apt-get install -y \

       curl \
    && true
RUN echo "no continuation here" \\
RUN echo trailing-escape-at-eof \
