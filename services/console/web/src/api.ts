// The console edge's JSON API (same origin). The bearer token lives in sessionStorage: it is
// forgotten when the tab closes, and every call carries it to the edge, which forwards it to
// the gRPC services (they do all authorisation).

const TOKEN_KEY = "inbox.console.token";

export interface Session {
  token: string;
  org: string;
  agent: string;
  role: string;
  teams: string[];
  exp: number | null;
}

export class ApiError extends Error {
  constructor(
    readonly httpStatus: number,
    readonly status: string,
    message: string,
    readonly field?: string,
    readonly reason?: string,
  ) {
    super(message);
  }

  /** A stale write: someone changed the data since it was loaded. */
  get isConflict(): boolean {
    return this.status === "ABORTED";
  }

  describe(): string {
    return this.field ? `${this.message} (field ${this.field})` : this.message;
  }
}

type Listener = () => void;
const signedOutListeners: Listener[] = [];

export function onSignedOut(listener: Listener): void {
  signedOutListeners.push(listener);
}

export function session(): Session | null {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return null;
  try {
    // Display only: the edge and the services verify the token, never this page.
    const payload = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    const exp = typeof payload.exp === "number" ? payload.exp : null;
    if (exp !== null && exp * 1000 < Date.now()) {
      sessionStorage.removeItem(TOKEN_KEY);
      return null;
    }
    return {
      token,
      org: String(payload.org ?? ""),
      agent: String(payload.sub ?? ""),
      role: String(payload.role ?? "agent"),
      teams: Array.isArray(payload.teams) ? payload.teams.map(String) : [],
      exp,
    };
  } catch {
    sessionStorage.removeItem(TOKEN_KEY);
    return null;
  }
}

export function signIn(token: string): void {
  sessionStorage.setItem(TOKEN_KEY, token.trim());
}

export function signOut(): void {
  sessionStorage.removeItem(TOKEN_KEY);
  signedOutListeners.forEach((l) => l());
}

export async function api<T>(method: string, path: string, body?: unknown, token?: string): Promise<T> {
  const headers: Record<string, string> = { accept: "application/json" };
  const bearer = token ?? session()?.token;
  if (bearer) headers.authorization = `Bearer ${bearer}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  let response: Response;
  try {
    response = await fetch(`/api${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (exc) {
    throw new ApiError(0, "UNAVAILABLE", `the console edge is unreachable: ${String(exc)}`);
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = (data as { error?: Record<string, string> }).error ?? {};
    const problem = new ApiError(
      response.status,
      error.status ?? "UNKNOWN",
      error.message ?? response.statusText,
      error.field,
      error.reason,
    );
    if (response.status === 401 && token === undefined) signOut();
    throw problem;
  }
  return data as T;
}

export const q = encodeURIComponent;

// --- the shapes the API returns (protobuf JSON mapping with proto field names) ---------------

export interface AttributeDefinition {
  key: string;
  label: string;
  type: string;
  options: string[];
  enabled: boolean;
  position: number;
  built_in: boolean;
}
export interface Definitions {
  definitions: AttributeDefinition[];
  version: string;
}
export interface CardField {
  key: string;
  label: string;
  type: string;
  has_value: boolean;
  value?: { display?: string } | null;
}
export interface ContactCard {
  contact_id: string;
  fields: CardField[];
}
export interface RoutingSettings {
  remove_assignment_on_sign_out: boolean;
  updated_at?: string | null;
  updated_by: string;
}
export interface AssignmentSettings {
  enabled: boolean;
  default_capacity: number;
  team_capacities: Record<string, number>;
  channel_teams: Record<string, string>;
  updated_at?: string | null;
  updated_by: string;
}
export interface WaitingConversation {
  conversation_id: string;
  waiting_since?: string | null;
  team: string;
  channel_id: string;
  reason: string;
  at_capacity: number;
  away: number;
  signed_out: number;
}
export interface AgentLoad {
  agent_id: string;
  signed_in: boolean;
  available: boolean;
  teams: string[];
  held: number;
  capacity: number;
  team_capacities: Record<string, number>;
}
export interface Conversation {
  conversation_id: string;
  queue: string;
  assignee_id: string;
  assigned_by: string;
  assigned_at?: string | null;
  updated_at?: string | null;
}
export interface AuditEntry {
  kind: string;
  occurred_at?: string | null;
  actor: string;
  cause_event_type: string;
  from_queue: string;
  to_queue: string;
  assignee_id: string;
  previous_assignee_id: string;
  reason: string;
  decision_id: string;
}
export interface AgentPresence {
  agent_id: string;
  signed_in: boolean;
  since?: string | null;
  availability: string;
}
export interface Collection {
  collection_id: string;
  kind: string;
  name: string;
  description: string;
  team_ids: string[];
  channel_ids: string[];
}
export interface SavedReply {
  reply_id: string;
  collection_id: string;
  title: string;
  body: string;
  shortcut: string;
  tags: string[];
  usage_count: string;
}
export interface SearchResult {
  reply: SavedReply;
  match: string;
}
export interface Rendered {
  text: string;
  missing_placeholders: string[];
  fallback_placeholders: string[];
  contact_found: boolean;
}
