FROM a
COPY --chown=:staff a /b
