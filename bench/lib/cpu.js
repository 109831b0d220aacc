// CPU time per job, for comparisons that hold up when the machine is not quiet: wall-clock throughput moves
// with whatever else runs, CPU time spent on the work much less. Read from /proc, so only when PostgreSQL
// runs on this machine (Linux); elsewhere the rows print "-".
import fs from 'node:fs';

const TICK_US = 1_000_000 / 100; // USER_HZ is 100 on Linux

/** CPU microseconds used so far by the PostgreSQL processes that serve `database` (backends, autovacuum). */
function postgresCpuUs(database) {
  let total = 0;
  for (const pid of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (!cmdline.startsWith('postgres:') || !cmdline.includes(` ${database} `)) continue;
      const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
      total += (Number(fields[11]) + Number(fields[12])) * TICK_US;
    } catch {
      // the process ended between the listing and the read
    }
  }
  return total;
}

function available(database) {
  try {
    return fs.readdirSync('/proc').some((pid) => /^\d+$/.test(pid) && fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(` ${database} `));
  } catch {
    return false;
  }
}

/**
 * Starts counting; `stop(jobs)` returns CPU microseconds per job of PostgreSQL (the database's processes)
 * and of this process (the worker, plus the bench's own polling), or undefined values when unavailable.
 * A backend that exits in between takes its time with it, so workers must still run at `stop`.
 */
export function startCpuCount(database) {
  const canRead = available(database);
  const pg0 = canRead ? postgresCpuUs(database) : 0;
  const node0 = process.cpuUsage();
  return {
    stop(jobs) {
      const node = process.cpuUsage(node0);
      return {
        postgresUsPerJob: canRead ? (postgresCpuUs(database) - pg0) / jobs : undefined,
        workerUsPerJob: (node.user + node.system) / jobs,
      };
    },
  };
}
