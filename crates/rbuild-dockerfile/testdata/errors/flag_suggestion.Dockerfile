FROM a
COPY --form=x a /b
