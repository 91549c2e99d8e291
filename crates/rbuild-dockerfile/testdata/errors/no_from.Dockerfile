RUN echo hi
FROM a
