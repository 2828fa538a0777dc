export interface IdempotencyRecord {
  orgId: string;
  key: string;
  requestHash: string;
  /** Server process that is answering it; null once the response is stored. */
  owner: string | null;
  responseStatus: number | null;
  responseBody: string | null;
  createdAt: number;
}
