FROM a
RUN --network=bridge true
