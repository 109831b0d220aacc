import type { Argv } from 'yargs';
import { withClient, type CommonFlags } from '../context.js';
import { formatDuration, formatTime, printJson, printTable } from '../format.js';

export function workersCommand(yargs: Argv<CommonFlags>) {
  return yargs.command(
    'workers',
    'list agents: host, pid, queues, heartbeat age, alive or dead, which one leads',
    (y) => y.example('$0 workers', 'every agent that has registered').example('$0 workers --json', 'as JSON'),
    async (argv) => {
      // Alive is judged in the query, by each agent's own heartbeat interval (three beats missed at most).
      const agents = await withClient(argv, ({ client }) => client.listAgents());
      const rows = agents.map((agent) => ({ ...agent, leader: agent.isLeader }));
      if (argv.json) return printJson(rows);
      printTable(
        rows,
        [
          { header: 'AGENT', value: (agent) => agent.id },
          { header: 'HOST', value: (agent) => agent.host },
          { header: 'PID', value: (agent) => agent.pid, right: true },
          { header: 'QUEUES', value: (agent) => (agent.queues ? agent.queues.join(',') : '(all)') },
          { header: 'CONCURRENCY', value: (agent) => agent.concurrency, right: true },
          { header: 'STATE', value: (agent) => agent.state },
          { header: 'HEARTBEAT', value: (agent) => `${formatDuration(agent.heartbeatAgeMs)} ago` },
          { header: 'STATUS', value: (agent) => (agent.alive ? 'alive' : 'dead') },
          { header: 'LEADER', value: (agent) => (agent.leader ? 'leader' : '') },
          { header: 'STARTED', value: (agent) => formatTime(agent.startedAt) },
        ],
        '(no agents have registered: start one with `wida agent --handlers FILE`)',
      );
    },
  );
}
