FROM a
RUN --mount=type=volume,target=/x true
