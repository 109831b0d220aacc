import type { Argv } from 'yargs';
import type { AgentRow } from '../../shared/admin.js';
import { configFromFlags, withClient, type CommonFlags } from '../context.js';
import { formatDuration, formatTime, printJson, printTable } from '../format.js';

/** An agent beats every min(5 s, lease / 3); three missed beats, or a stopped state, mean it is gone. */
export function isAgentAlive(agent: AgentRow, leaseMs: number): boolean {
  const heartbeatIntervalMs = Math.min(5_000, leaseMs / 3);
  return agent.state !== 'stopped' && agent.heartbeatAgeMs <= 3 * heartbeatIntervalMs;
}

export function workersCommand(yargs: Argv<CommonFlags>) {
  return yargs.command(
    'workers',
    'list agents: host, pid, queues, heartbeat age, alive or dead, which one leads',
    (y) => y.example('$0 workers', 'every agent that has registered').example('$0 workers --json', 'as JSON'),
    async (argv) => {
      const leaseMs = configFromFlags(argv).WIDA_LEASE;
      const agents = await withClient(argv, ({ client }) => client.listAgents());
      const rows = agents.map((agent) => ({ ...agent, alive: isAgentAlive(agent, leaseMs), leader: agent.isLeader }));
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
