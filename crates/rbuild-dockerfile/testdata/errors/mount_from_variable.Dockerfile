FROM a
RUN --mount=from=$STAGE,target=/x true
