// Progress for command-line runs: a redrawn bar on a TTY, plain log lines otherwise.

export interface Progress {
  update(done: number, total: number, detail?: string): void;
  done(detail?: string): void;
}

export function createProgress(label: string, stream: NodeJS.WriteStream = process.stderr): Progress {
  const tty = Boolean(stream.isTTY);
  let lastLogged = -1;
  return {
    update(done, total, detail = "") {
      const share = total > 0 ? Math.min(1, done / total) : 0;
      if (tty) {
        const width = 30;
        const filled = Math.round(share * width);
        stream.write(`\r${label} [${"=".repeat(filled)}${" ".repeat(width - filled)}] ${(100 * share).toFixed(0).padStart(3)}% ${done}/${total} ${detail}\x1b[K`);
      } else {
        const decile = Math.floor(share * 10);
        if (decile !== lastLogged) {
          lastLogged = decile;
          stream.write(`${label}: ${done}/${total} ${detail}\n`);
        }
      }
    },
    done(detail = "") {
      stream.write(tty ? `\r${label} done ${detail}\x1b[K\n` : `${label}: done ${detail}\n`);
    },
  };
}
