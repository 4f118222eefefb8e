/**
 * The container engine as berthd sees it. Adapters (docker/, later local/) implement this with
 * berth's own types only: no dockerode object crosses this boundary.
 */
export interface EngineInfo {
  version: string;
  apiVersion: string;
}

export interface ImageInfo {
  id: string;
  tags: string[];
  sizeBytes: number;
  createdAt: string;
}

export interface EnginePort {
  /** Human-readable engine address, for status output. */
  readonly host: string;
  /** Resolves when the engine answers; rejects with the transport error otherwise (adapters bound the wait). */
  info(): Promise<EngineInfo>;
  /** OCI runtimes the engine offers (`runc`, `sysbox-runc` ...). */
  runtimes(): Promise<string[]>;
  /** The image, or null when the engine does not have it. */
  image(ref: string): Promise<ImageInfo | null>;
}
