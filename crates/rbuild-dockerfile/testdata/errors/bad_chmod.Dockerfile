FROM a
COPY --chmod=888 a /b
