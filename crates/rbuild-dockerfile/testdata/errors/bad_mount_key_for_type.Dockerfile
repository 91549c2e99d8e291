FROM a
RUN --mount=type=bind,uid=1,target=/x true
