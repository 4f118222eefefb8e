import { eventTypeMatches, type BerthEvent } from '@berth/client-sdk/protocol';

/** What an /events client asked for: types (exact or `prefix.*`), one session, one project. */
export interface EventFilter {
  types?: readonly string[];
  /** The session as asked for (`ref`) and, when it exists, its full id. */
  session?: { ref: string; id: string | null };
  project?: string;
}

/** Which session and project an event is about (none for daemon, engine, image and agent events). */
export function subjectOf(e: BerthEvent): { sessionId?: string; sessionName?: string; project?: string } {
  switch (e.type) {
    case 'session.created':
    case 'session.state':
      return { sessionId: e.data.session.id, sessionName: e.data.session.name, project: e.data.session.project };
    case 'notification':
      return { sessionId: e.data.session.id, sessionName: e.data.session.name, project: e.data.session.project };
    case 'session.removed':
    case 'session.imported':
    case 'session.usage':
    case 'session.activity':
    case 'session.budget':
      return { sessionId: e.data.id, sessionName: e.data.name };
    case 'project.added':
      return { project: e.data.project.name };
    case 'project.removed':
      return { project: e.data.name };
    default:
      return {};
  }
}

/**
 * A predicate for the events a filter lets through. `projectOf` names a session's project for the
 * events that carry only its id (it is asked once per session and remembered).
 */
export function eventFilter(f: EventFilter, projectOf: (sessionId: string) => string | undefined): (e: BerthEvent) => boolean {
  const projects = new Map<string, string | undefined>();
  return (e) => {
    if (!eventTypeMatches(e.type, f.types)) return false;
    if (!f.session && !f.project) return true;
    const s = subjectOf(e);
    if (s.sessionId && s.project) projects.set(s.sessionId, s.project);
    if (f.session) {
      const { ref, id } = f.session;
      if (!(s.sessionId !== undefined && (s.sessionId === id || s.sessionId === ref || s.sessionName === ref))) return false;
    }
    if (f.project) {
      let project = s.project;
      if (project === undefined && s.sessionId !== undefined) {
        if (!projects.has(s.sessionId)) projects.set(s.sessionId, projectOf(s.sessionId));
        project = projects.get(s.sessionId);
      }
      if (project !== f.project) return false;
    }
    return true;
  };
}
