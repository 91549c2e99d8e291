FROM a AS b
FROM c
COPY --from=$B x /y
