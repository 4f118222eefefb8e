import { BerthError, type Agent, type ParamsOf } from '@berth/client-sdk/protocol';
import type { EventBus } from '../events/bus.js';
import { assertName } from '../shared/names.js';
import type { AgentsRepo } from '../store/agents.js';
import type { SessionsRepo } from '../store/sessions.js';

/** Agent profiles: what to run (image, argv), with which environment, role and limits. */
export class AgentService {
  constructor(
    private readonly repo: AgentsRepo,
    private readonly sessions: SessionsRepo,
    private readonly bus: EventBus,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** Creates the agent, or replaces the definition of an existing one. */
  define(p: ParamsOf<'agents.define'>): Agent {
    assertName('agent', p.name);
    const ts = this.now().toISOString();
    const { agent, created } = this.repo.upsert({
      name: p.name,
      image: p.image ?? null,
      command: p.command,
      env: p.env ?? {},
      role: p.role ?? null,
      readOnly: p.readOnly ?? false,
      limits: p.limits ?? {},
      restartPolicy: p.restartPolicy ?? 'on-failure',
      network: p.network ?? null,
      readOnlyRootfs: p.readOnlyRootfs ?? false,
      capAdd: [...new Set(p.capAdd ?? [])].sort(),
      secrets: p.secrets ?? {},
      budgetTokens: p.budgetTokens ?? null,
      stuckAfterSec: p.stuckAfterSec ?? null,
      onStuck: p.onStuck ?? 'restart',
      createdAt: ts,
      updatedAt: ts,
    });
    this.bus.publish('agent.defined', { agent, created });
    return agent;
  }

  list(): Agent[] {
    return this.repo.list();
  }

  get(name: string): Agent {
    assertName('agent', name);
    const a = this.repo.get(name);
    if (!a) throw new BerthError('AGENT_NOT_FOUND', `no agent named ${name}`, { details: { name } });
    return a;
  }

  remove(name: string): { removed: string } {
    this.get(name);
    const n = this.sessions.countByAgent(name);
    if (n > 0) {
      const names = this.sessions.namesBy('agent', name);
      throw new BerthError('AGENT_IN_USE', `agent ${name} runs in ${n} session(s): ${names.join(', ')}${n > names.length ? ', …' : ''}`, {
        details: { name, sessions: n, names },
      });
    }
    this.repo.remove(name);
    this.bus.publish('agent.removed', { name });
    return { removed: name };
  }
}
