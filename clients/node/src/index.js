// JetSource's Node.js client: send order commands, await their results,
// and read an order's events, on the official NATS packages. It follows the
// wire contract of docs/contract.md and docs/asyncapi.yaml; the Go package
// github.com/jetsource/jetsource/contract is its reference.

import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";

export const COMMANDS_STREAM = "ORDERS_COMMANDS";
export const EVENTS_STREAM = "ORDERS_EVENTS";
export const RESULTS_STREAM = "ORDERS_RESULTS";
export const DEFAULT_PARTITIONS = 16;

export const COMMAND_TYPES = Object.freeze([
  "CreateOrder", "AddItem", "RemoveItem", "SubmitOrder", "PayOrder", "ShipOrder", "DeliverOrder", "CancelOrder",
]);
export const EVENT_TYPES = Object.freeze([
  "OrderCreated", "ItemAdded", "ItemRemoved", "OrderSubmitted", "OrderPaid", "OrderShipped", "OrderDelivered", "OrderCanceled",
]);

/** Thrown for an id that must never reach a subject. */
export class InvalidIdError extends Error {
  constructor(message) {
    super(message);
    this.name = "InvalidIdError";
  }
}

/** A rejected command: `code` is the wire error code, `result` the result. */
export class RejectedError extends Error {
  constructor(result) {
    super(`command ${result.commandId} rejected: ${result.error.code}: ${result.error.message}`);
    this.name = "RejectedError";
    this.result = result;
    this.code = result.error.code;
  }
}

/** Thrown when no result arrived in time; sending the same id again is safe. */
export class TimeoutError extends Error {
  constructor(commandId, ms) {
    super(`no result for command ${commandId} within ${ms} ms; it may still be handled: ` +
      `send it again with the same id or await its result to learn its one outcome`);
    this.name = "TimeoutError";
    this.commandId = commandId;
  }
}

const ID = /^[A-Za-z0-9_-]{1,128}$/;

/**
 * Checks an id: 1 to 128 characters of [A-Za-z0-9_-]. Ids become subject
 * tokens, so anything else could address other subjects.
 */
export function validateId(field, id) {
  if (typeof id !== "string" || !ID.test(id)) {
    throw new InvalidIdError(`${field} ${JSON.stringify(id)} is not an id: 1 to 128 characters of A-Z, a-z, 0-9, '_' and '-'`);
  }
}

/** FNV-1a 32 of the order id modulo the partition count, as the server's {{partition(n,1)}}. */
export function partition(orderId, partitions = DEFAULT_PARTITIONS) {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(orderId, "utf8")) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % partitions;
}

export const subjects = Object.freeze({
  /** Where a command is published. */
  command: (orderId, type) => `orders.commands.${orderId}.${type}`,
  /** An order's subject in the event store. */
  event: (orderId, partitions = DEFAULT_PARTITIONS) => `orders.events.${partition(orderId, partitions)}.${orderId}`,
  /** The events of one order, whatever its partition. */
  orderEvents: (orderId) => `orders.events.*.${orderId}`,
  /** The events of every order. */
  allEvents: "orders.events.>",
  /** A command's result. */
  result: (commandId) => `orders.results.${commandId}`,
});

/** The current schema version of an event type's data. */
export function schemaVersion(eventType) {
  return eventType === "OrderShipped" ? 2 : 1;
}

// One step per event type and the version it lifts from.
const upcasters = {
  "OrderShipped@1": ({ trackingNumber, carrier }) => ({ shipment: { trackingNumber, carrier } }),
};

/**
 * Returns the event with its data lifted to the current schema version of
 * its type. Events are immutable, so readers upcast what they read: an
 * OrderShipped stored at version 1 ({trackingNumber, carrier}) reads as
 * version 2 ({shipment: {trackingNumber, carrier}}).
 */
export function upcast(event) {
  const current = schemaVersion(event.type);
  if (!Number.isInteger(event.schemaVersion) || event.schemaVersion < 1 || event.schemaVersion > current) {
    throw new Error(`event ${event.id} (${event.type}) has schema version ${event.schemaVersion}; this client reads 1 to ${current}`);
  }
  let e = event;
  while (e.schemaVersion < current) {
    const step = upcasters[`${e.type}@${e.schemaVersion}`];
    e = { ...e, data: step(e.data), schemaVersion: e.schemaVersion + 1 };
  }
  return e;
}

/** A fresh command id: "cmd-" and 26 random hex digits. */
export function newCommandId() {
  return "cmd-" + randomBytes(13).toString("hex");
}

/** Sends commands and reads results and events over a NATS connection. */
export class JetSourceClient {
  #nc;
  #js;
  #jsm;
  #partitions;

  /**
   * @param nc an open connection from @nats-io/transport-node's connect()
   * @param options.partitions the partition count the streams were created with
   */
  constructor(nc, { partitions = DEFAULT_PARTITIONS } = {}) {
    this.#nc = nc;
    this.#js = jetstream(nc);
    this.#partitions = partitions;
  }

  async #manager() {
    // checkAPI off: a publisher may not be allowed the account info request.
    this.#jsm ??= await jetstreamManager(this.#nc, { checkAPI: false });
    return this.#jsm;
  }

  /**
   * Publishes a command and waits for its result. Resolves with an
   * accepted result; rejects with a RejectedError (its `code` is the wire
   * code), a TimeoutError, or an InvalidIdError before anything is sent.
   * Sending again with the same `id` returns the command's one outcome.
   */
  async send(orderId, type, data, { id = newCommandId(), metadata, timeout = 10_000 } = {}) {
    validateId("orderId", orderId);
    validateId("id", id);
    const envelope = { id, type, orderId, data: data ?? {}, ...(metadata ? { metadata } : {}) };
    const sub = this.#nc.subscribe(subjects.result(id), { max: 1 });
    try {
      await this.#js.publish(subjects.command(orderId, type), JSON.stringify(envelope), { msgID: id });
      return check(await this.#await(id, sub, timeout));
    } finally {
      sub.unsubscribe();
    }
  }

  /** Waits for the result of a command published earlier. */
  async awaitResult(commandId, { timeout = 10_000 } = {}) {
    validateId("commandId", commandId);
    const sub = this.#nc.subscribe(subjects.result(commandId), { max: 1 });
    try {
      return check(await this.#await(commandId, sub, timeout));
    } finally {
      sub.unsubscribe();
    }
  }

  // The result comes by subscription, or from the results stream when it
  // was stored before the subscription began (a re-sent command).
  async #await(commandId, sub, timeout) {
    const deadline = Date.now() + timeout;
    const arrived = (async () => {
      for await (const m of sub) return m.json();
    })();
    arrived.catch(() => {}); // raced below; unhandled only if the stored result came first
    for (;;) {
      const stored = await this.#stored(commandId);
      if (stored) return stored;
      const left = deadline - Date.now();
      if (left <= 0) throw new TimeoutError(commandId, timeout);
      const r = await Promise.race([arrived, sleep(Math.min(500, left), null, { ref: false })]);
      if (r) return r;
    }
  }

  async #stored(commandId) {
    const jsm = await this.#manager();
    const m = await jsm.direct.getMessage(RESULTS_STREAM, { last_by_subj: subjects.result(commandId) });
    return m ? m.json() : null;
  }

  /**
   * Returns an order's events, oldest first, upcast to the current schema
   * versions, each with its stream `sequence` and `subject`. They are read
   * with direct gets, which on a replicated stream any replica answers:
   * right after a command, a lagging one can miss its events.
   */
  async events(orderId) {
    validateId("orderId", orderId);
    const jsm = await this.#manager();
    const subject = subjects.event(orderId, this.#partitions);
    const out = [];
    for (let seq = 1; ;) {
      const batch = await jsm.direct.getBatch(EVENTS_STREAM, { seq, next_by_subj: subject, batch: 1000 });
      let pending = 0;
      try {
        for await (const m of batch) {
          out.push(upcast({ ...m.json(), sequence: m.seq, subject: m.subject }));
          seq = m.seq + 1;
          pending = m.pending;
        }
      } catch (err) {
        if (err.code === 404) return out; // no (more) events on the subject
        throw err;
      }
      if (pending <= 0) return out;
    }
  }
}

function check(result) {
  if (result.status === "rejected") throw new RejectedError(result);
  return result;
}
