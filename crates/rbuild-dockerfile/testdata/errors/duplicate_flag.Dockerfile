FROM a
COPY --link --link a /b
