FROM a
ENV A="unterminated
