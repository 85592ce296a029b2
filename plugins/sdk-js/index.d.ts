// Types of orch-sdk, the JavaScript SDK for orch plugins (WIT package orch:plugin@0.2.0).

// ---------------------------------------------------------------------------------------------
// Errors

/** Why a step did not succeed; the subclass tells the host whether to retry. */
export class StepError extends Error {
  constructor(message: string);
  /** The case of the WIT `step-error` variant. */
  readonly tag: 'invalid-config' | 'denied' | 'retryable' | 'failed';
}
/** `with` is wrong: fix the workflow. Never retried. */
export class InvalidConfig extends StepError {
  readonly tag: 'invalid-config';
}
/** A grant is missing. Never retried. */
export class Denied extends StepError {
  readonly tag: 'denied';
}
/** A transient fault (network, lock, busy server). Retried per the step's `retry`. */
export class Retryable extends StepError {
  readonly tag: 'retryable';
}
/** A permanent fault. Never retried. Host errors with a code (SQLSTATE, Kafka error) keep it in `code`. */
export class Failed extends StepError {
  readonly tag: 'failed';
  code?: string;
}

// ---------------------------------------------------------------------------------------------
// The step context

/** The kind of change a step declares. */
export type ChangeKind = 'create' | 'update' | 'replace' | 'delete' | 'run' | 'none';

/** Which of the host's calls the body is serving: `orch plan` or `orch run`. */
export type Mode = 'plan' | 'apply';

/** Where a call comes from (the WIT `step-context`). */
export interface StepContext {
  runId: string;
  workflow: string;
  stepId: string;
  /** 1 for the first try, 2 for the first retry, ... */
  attempt: number;
  /** What started the run: cli, cron, http, webhook. */
  trigger: string;
}

/** One declared change (the WIT `change`). */
export interface Change {
  kind: ChangeKind;
  resource: string;
  detail: string;
}

/** One published output (the WIT `output`); `value` is JSON text. */
export interface Output {
  name: string;
  value: string;
  secret: boolean;
}

/** What the body sees of its call, and where it records changes and outputs. */
export class Cx implements StepContext {
  constructor(mode: Mode, context?: Partial<StepContext>);
  readonly mode: Mode;
  readonly runId: string;
  readonly workflow: string;
  readonly stepId: string;
  readonly attempt: number;
  readonly trigger: string;
  /** True when the body should make its changes (mode "apply"). */
  readonly applying: boolean;
  /** The context fields as one object. */
  readonly context: StepContext;
  /**
   * Declare a change. In a plan it is recorded and `false` comes back (do not make it); in a
   * run it is logged at info ("create role etl: CREATE ROLE etl") and `true` comes back.
   */
  change(kind: ChangeKind, resource: string, detail?: string): boolean;
  /**
   * Publish `value` (anything JSON can hold; BigInt becomes an exact number, bytes an array of
   * numbers) as `steps.ID.outputs.NAME`. Ignored in a plan. `secret`: masked everywhere.
   */
  output(name: string, value: unknown, options?: { secret?: boolean }): void;
  /** The changes declared so far. */
  readonly changes: Change[];
  /** The outputs published so far. */
  readonly outputs: Output[];
}

// ---------------------------------------------------------------------------------------------
// Config schema

/** A JSON Schema (draft 2020-12) object; the SDK checks the subset described in the README. */
export interface JsonSchema {
  type?: JsonType | JsonType[];
  description?: string;
  default?: unknown;
  enum?: readonly unknown[];
  const?: unknown;
  properties?: { [name: string]: JsonSchema };
  required?: readonly string[];
  additionalProperties?: boolean | JsonSchema;
  items?: JsonSchema;
  [keyword: string]: unknown;
}
export type JsonType = 'null' | 'boolean' | 'string' | 'integer' | 'number' | 'array' | 'object';

declare const VALUE: unique symbol;
declare const OPTIONAL: unique symbol;

/** A schema that also carries the TypeScript type of the values it accepts. */
export type Schema<T> = JsonSchema & { readonly [VALUE]?: T };
/** A field schema marked with `schema.optional`: may be absent from the config. */
export type OptionalSchema<T> = Schema<T> & { readonly [OPTIONAL]: true };

/** The config type a schema describes: exact for `schema.*` builders, `any` for plain objects. */
export type Infer<S> = S extends { readonly [VALUE]?: infer T } ? (unknown extends T ? any : T) : any;

type OptionalKeys<P> = { [K in keyof P]: P[K] extends { readonly [OPTIONAL]: true } ? K : never }[keyof P];
type Simplify<T> = { [K in keyof T]: T[K] } & {};
export type ObjectOf<P extends { [name: string]: JsonSchema }> = Simplify<
  { -readonly [K in Exclude<keyof P, OptionalKeys<P>>]: Infer<P[K]> } & {
    -readonly [K in OptionalKeys<P>]?: Infer<P[K]>;
  }
>;

/** Keywords a field may carry (`description`, `default`, `minimum`, `pattern`, ...). */
export type FieldOptions<T> = { description?: string; default?: T; [keyword: string]: unknown };

/**
 * Tiny builders for the config's JSON schema. `object` lists its fields as required unless they
 * have a `default` (filled in before the body runs) or are wrapped in `optional`, and refuses
 * unknown fields (`additionalProperties: false`).
 */
export const schema: {
  string(options?: FieldOptions<string>): Schema<string>;
  integer(options?: FieldOptions<number>): Schema<number>;
  number(options?: FieldOptions<number>): Schema<number>;
  boolean(options?: FieldOptions<boolean>): Schema<boolean>;
  enum<const V extends readonly string[]>(values: V, options?: FieldOptions<V[number]>): Schema<V[number]>;
  array<S extends JsonSchema>(items: S, options?: FieldOptions<Infer<S>[]>): Schema<Infer<S>[]>;
  map<S extends JsonSchema>(values: S, options?: FieldOptions<{ [key: string]: Infer<S> }>): Schema<{ [key: string]: Infer<S> }>;
  optional<S extends JsonSchema>(schema: S): OptionalSchema<Infer<S>>;
  object<P extends { [name: string]: JsonSchema }>(properties: P, options?: FieldOptions<ObjectOf<P>>): Schema<ObjectOf<P>>;
};

/**
 * Parse config JSON and check it against `schema` (types, required, unknown properties, enum,
 * const; defaults filled in). Throws InvalidConfig naming the field.
 */
export function parseConfig<S extends JsonSchema>(configJson: string, schema: S): Infer<S>;

// ---------------------------------------------------------------------------------------------
// The plugin declaration

export interface PluginDefinition<S extends JsonSchema> {
  /** The plugin's name (what `orch plugin inspect` shows). */
  name: string;
  /** Default "0.1.0". */
  version?: string;
  /** One line for `orch plugin inspect`. */
  description?: string;
  /** The JSON schema of the step's `with` table; default: an object with no fields. */
  config?: S;
  /**
   * The one body for `orch plan` and `orch run`: read the world, declare each difference with
   * `cx.change` and make it only when that returns true; publish results with `cx.output`.
   * Throw an SDK error to fail; any other throw is Failed("Name: message"). May be async.
   */
  step(cx: Cx, config: Infer<S>): void | Promise<void>;
}

/** What the `step` world exports; re-export them from the entry module. */
export interface PluginExports {
  describe(): { name: string; version: string; description: string; configSchema: string };
  plan(ctx: StepContext, config: string): Change[] | Promise<Change[]>;
  run(ctx: StepContext, config: string): Output[] | Promise<Output[]>;
}

/** Declare a plugin: `export const { describe, plan, run } = plugin({...})`. */
export function plugin<S extends JsonSchema = JsonSchema>(definition: PluginDefinition<S>): PluginExports;

// ---------------------------------------------------------------------------------------------
// Logging

/** Step logs; the host tags each line with run and step and masks secrets. */
export const log: {
  trace(message: unknown): void;
  debug(message: unknown): void;
  info(message: unknown): void;
  warn(message: unknown): void;
  error(message: unknown): void;
  /** `current` of `total` units done; total unknown: leave it out. */
  progress(current: number | bigint, total?: number | bigint | null, message?: string): void;
};

// ---------------------------------------------------------------------------------------------
// HTTP

export type Headers = { [name: string]: string } | Array<[string, string]>;
export type Body = string | Uint8Array | ArrayBuffer | ArrayBufferView | object | null | undefined;

export interface RequestOptions {
  headers?: Headers;
  /** A string (UTF-8), bytes, or any other value sent as JSON (content-type set if absent). */
  body?: Body;
  /** Refuse a response body larger than this (Failed); default 16 MiB. */
  maxSize?: number;
  /** Connect, first-byte and between-bytes timeout; default: the host's. */
  timeoutMs?: number;
}

/** A whole HTTP response. */
export class HttpResponse {
  readonly url: string;
  readonly status: number;
  /** Every header as [name, value], names lower-cased. */
  readonly headerList: Array<[string, string]>;
  /** Headers by lower-cased name; repeated headers joined with ", ". */
  readonly headers: { [name: string]: string };
  readonly body: Uint8Array;
  /** True for a 2xx status. */
  readonly ok: boolean;
  header(name: string): string | undefined;
  text(): string;
  /** The body parsed as JSON; Failed if it is not. */
  json<T = any>(): T;
  /** This response if 2xx; 429 and 5xx throw Retryable, other statuses Failed. */
  raiseForStatus(): this;
}

/**
 * A blocking HTTP client over the host's gated wasi:http. A destination the step's `allow` does
 * not grant is Denied; refused connections, timeouts and DNS failures are Retryable.
 * Redirects are not followed.
 */
export const http: {
  request(method: string, url: string, options?: RequestOptions): HttpResponse;
  get(url: string, options?: RequestOptions): HttpResponse;
  head(url: string, options?: RequestOptions): HttpResponse;
  delete(url: string, options?: RequestOptions): HttpResponse;
  post(url: string, body?: Body, options?: RequestOptions): HttpResponse;
  put(url: string, body?: Body, options?: RequestOptions): HttpResponse;
  patch(url: string, body?: Body, options?: RequestOptions): HttpResponse;
};

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/** A value bound as a parameter or read from a cell. */
export type SqlValue = null | boolean | number | bigint | string | Uint8Array | Date | object;
/** A parameter with its type forced (`postgres.float(1)`, `postgres.json("text")`). */
export interface TypedSqlValue {
  readonly tag: 'null' | 'boolean' | 'int' | 'float' | 'text' | 'bytes' | 'json';
  readonly val: unknown;
}
/** A row: column name → value (null, boolean, number or bigint, string, Uint8Array, parsed JSON). */
export type Row = { [column: string]: any };

/** One session; statements run in autocommit unless `begin` was called. */
export interface Connection {
  /** Run a statement; the number of rows affected. */
  execute(sql: string, params?: Array<SqlValue | TypedSqlValue | undefined>): number;
  /** Run a query; rows as objects. At most `limit` rows (a number or `{ limit }`). */
  query<R extends Row = Row>(sql: string, params?: Array<SqlValue | TypedSqlValue | undefined>, limit?: number | { limit?: number }): R[];
  /** The first row, or null. */
  queryOne<R extends Row = Row>(sql: string, params?: Array<SqlValue | TypedSqlValue | undefined>): R | null;
  /** Run a query; columns and rows as arrays. */
  queryRaw(sql: string, params?: Array<SqlValue | TypedSqlValue | undefined>, limit?: number | { limit?: number }): { columns: string[]; rows: any[][] };
  /** `COPY ... FROM STDIN` with `data` in the statement's format; rows copied. */
  copyIn(sql: string, data: string | Uint8Array | ArrayBuffer): number;
  /** `COPY … FROM STDIN` of rows keyed by column, encoded and streamed by the host; `columns` defaults to the first row's keys. */
  copyJson(sql: string, rows: Array<Record<string, unknown>> | string, columns?: string[]): number;
  begin(): void;
  commit(): void;
  rollback(): void;
  /** `begin`, run `f`, `commit`; `rollback` and rethrow if it throws. */
  transaction<T>(f: (connection: Connection) => T): T;
  /** Close the session now (it closes when the call ends anyway). */
  close(): void;
}

/** PostgreSQL through a connection the step's `allow` grants by name. */
export const postgres: {
  open(connection: string): Connection;
  int(value: number | bigint | string): TypedSqlValue;
  float(value: number): TypedSqlValue;
  text(value: unknown): TypedSqlValue;
  bytes(value: string | Uint8Array | ArrayBuffer): TypedSqlValue;
  json(value: unknown): TypedSqlValue;
  null(): TypedSqlValue;
};

// ---------------------------------------------------------------------------------------------
// Kafka (orch:plugin/kafka): the host's client, errors thrown as SDK errors

export namespace kafka {
  interface TopicConfig {
    name: string;
    value: string;
  }
  interface TopicInfo {
    name: string;
    partitions: number;
    replicationFactor: number;
  }
  interface Header {
    key: string;
    value: Uint8Array;
  }
  /** A record to produce; strings are sent as UTF-8; headers as a list or an object. */
  interface OutgoingRecord {
    key?: string | Uint8Array | null;
    value?: string | Uint8Array | null;
    headers?: Array<{ key: string; value: string | Uint8Array }> | { [key: string]: string | Uint8Array };
    partition?: number;
  }
  interface Incoming {
    partition: number;
    offset: bigint;
    key?: Uint8Array;
    value?: Uint8Array;
    headers: Header[];
    /** Milliseconds since the Unix epoch. */
    timestamp?: bigint;
  }
  /** Offset -1: none committed. */
  interface PartitionOffset {
    partition: number;
    offset: bigint | number;
  }
  interface GroupInfo {
    name: string;
    state: string;
    protocolType: string;
    members: number;
  }
  /** Defaults: no group, no offsets, maxRecords 100, timeoutMs 1000, commit false. */
  interface ConsumeRequest {
    topic: string;
    group?: string;
    offsets?: PartitionOffset[];
    maxRecords?: number;
    timeoutMs?: number;
    commit?: boolean;
  }
  interface Client {
    listTopics(): TopicInfo[];
    describeTopic(name: string): TopicInfo | undefined;
    createTopic(name: string, partitions?: number, replicationFactor?: number, configs?: TopicConfig[] | { [name: string]: string }): void;
    createPartitions(name: string, total: number): void;
    listGroups(): GroupInfo[];
    committed(group: string, topic: string): PartitionOffset[];
    commit(group: string, topic: string, offsets: PartitionOffset[]): void;
    /** [partition, low, high] for every partition. */
    watermarks(topic: string): Array<[number, bigint, bigint]>;
    /** Produce and wait until the broker has them all; how many. */
    produce(topic: string, records: OutgoingRecord[]): bigint;
    /** Produce a JSON array of `{key?, value?, headers?, partition?}`. */
    produceJson(topic: string, records: string): bigint;
    consume(request: ConsumeRequest): Incoming[];
    /** Drop the client now. */
    close(): void;
  }
}
/** Kafka through a connection the step's `allow` grants by name. */
export const kafka: { open(connection: string): kafka.Client };

// ---------------------------------------------------------------------------------------------
// Docker (orch:plugin/docker): the host's engine, errors thrown as SDK errors

export namespace docker {
  interface Pair {
    key: string;
    value: string;
  }
  /** Labels or options: a list of pairs, or an object. */
  type Labels = Pair[] | { [key: string]: string };
  type PullPolicy = 'missing' | 'always' | 'never';
  interface Port {
    containerPort: number;
    /** "tcp" or "udp". */
    protocol: string;
    hostIp?: string;
    hostPort?: number;
  }
  type MountKind = 'bind' | 'volume' | 'tmpfs';
  interface Mount {
    kind: MountKind;
    source: string;
    target: string;
    readOnly: boolean;
  }
  interface NetworkAttachment {
    network: string;
    aliases: string[];
  }
  /** Durations in milliseconds. */
  interface Healthcheck {
    test: string[];
    intervalMs: bigint | number;
    timeoutMs: bigint | number;
    retries: number;
    startPeriodMs: bigint | number;
  }
  interface DeviceRequest {
    driver: string;
    count: bigint | number;
    deviceIds: string[];
    capabilities: string[];
  }
  /** What to create; everything but name and image has a default (restart "no"). */
  interface ContainerSpec {
    name: string;
    image: string;
    command?: string[];
    entrypoint?: string[];
    /** "KEY=value" strings, or an object. */
    env?: string[] | { [key: string]: string };
    labels?: Labels;
    ports?: Port[];
    mounts?: Mount[];
    networks?: NetworkAttachment[];
    restart?: string;
    healthcheck?: Healthcheck;
    user?: string;
    workingDir?: string;
    hostname?: string;
    privileged?: boolean;
    networkMode?: string;
    pidMode?: string;
    capAdd?: string[];
    deviceRequests?: DeviceRequest[];
  }
  interface ContainerSummary {
    id: string;
    name: string;
    image: string;
    state: string;
    labels: Pair[];
  }
  interface ContainerState {
    id: string;
    name: string;
    status: string;
    running: boolean;
    exitCode: bigint;
    health?: string;
    healthLog: string[];
    labels: Pair[];
  }
  interface ImageInfo {
    id: string;
    tags: string[];
    sizeBytes: bigint;
    created: bigint;
  }
  interface NamedObject {
    name: string;
    labels: Pair[];
  }
  interface Engine {
    inspectImage(image: string): ImageInfo | undefined;
    listImages(reference?: string): ImageInfo[];
    ensureImage(image: string, policy?: PullPolicy): string;
    listNetworks(labels?: Labels): NamedObject[];
    createNetwork(name: string, labels?: Labels): void;
    removeNetwork(name: string): void;
    listVolumes(labels?: Labels): NamedObject[];
    createVolume(name: string, labels?: Labels): void;
    removeVolume(name: string): void;
    listContainers(labels?: Labels): ContainerSummary[];
    checkContainer(spec: ContainerSpec): void;
    createContainer(spec: ContainerSpec): string;
    startContainer(id: string): void;
    /** Default timeout 10 s. */
    stopContainer(id: string, timeoutSecs?: number): void;
    removeContainer(id: string, force?: boolean): void;
    inspectContainer(id: string): ContainerState;
    waitContainer(id: string): bigint;
    /** Default: the last 100 lines. */
    logs(id: string, tail?: number): string;
    /** Exit code and combined output. */
    exec(id: string, cmd: string[]): [bigint, string];
    /** Drop the engine handle now. */
    close(): void;
  }
}
/** A Docker engine through a connection the step's `allow` grants by name. */
export const docker: { open(connection: string): docker.Engine };
