FROM a
HEALTHCHECK --timeout=10us CMD true
