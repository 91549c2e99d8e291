FROM a
COPY --exclude a /b
