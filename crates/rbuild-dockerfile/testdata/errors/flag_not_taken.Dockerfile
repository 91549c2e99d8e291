FROM a
COPY --mount=type=bind a /b
