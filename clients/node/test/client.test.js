// Runs against a real NATS server with the JetSource streams and a running
// aggregator: `go test ./clients/node` starts both and sets NATS_URL.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "@nats-io/transport-node";
import { jetstream } from "@nats-io/jetstream";
import {
  InvalidIdError, JetSourceClient, RejectedError, newCommandId, partition, schemaVersion, subjects, upcast,
} from "../src/index.js";

const url = process.env.NATS_URL;
if (!url) {
  throw new Error("NATS_URL is not set: run these tests with `go test ./clients/node`, which starts NATS and the aggregator");
}
// Keeps the orders of separate runs against one server apart.
const run = newCommandId().slice(4, 12);
let nc;
let client;

before(async () => {
  nc = await connect({ servers: url });
  client = new JetSourceClient(nc);
});
after(async () => {
  await nc.drain();
});

test("send commands, await their results, read the order's events", async () => {
  const orderId = `ord-${run}-1`;
  const created = await client.send(orderId, "CreateOrder",
    { customerId: "c-1", currency: "EUR", items: [{ productId: "sku-1", quantity: 2, unitPriceCents: 1999 }] },
    { metadata: { userId: "u-7", correlationId: "corr-1" } });
  assert.equal(created.status, "accepted");
  assert.equal(created.orderId, orderId);
  assert.equal(created.version, 2);
  assert.equal(created.eventIds.length, 2);
  const submitted = await client.send(orderId, "SubmitOrder");
  assert.equal(submitted.version, 3);

  const events = await client.events(orderId);
  assert.deepEqual(events.map((e) => [e.version, e.type]), [[1, "OrderCreated"], [2, "ItemAdded"], [3, "OrderSubmitted"]]);
  assert.deepEqual(events[1].data, { productId: "sku-1", quantity: 2, unitPriceCents: 1999 });
  assert.deepEqual(events[2].data, { totalCents: 3998, itemCount: 1 });
  assert.equal(events[0].id, created.eventIds[0]);
  assert.equal(events[0].metadata.causationId, created.commandId);
  assert.equal(events[0].metadata.userId, "u-7");
  assert.equal(events[1].sequence, created.streamSequence);
  // The aggregator, in Go, stored them in the partition this client computes.
  assert.equal(events[0].subject, subjects.event(orderId));
  assert.deepEqual(await client.events(`ord-${run}-never`), []);
});

test("a command sent again with its id has one outcome", async () => {
  const orderId = `ord-${run}-2`;
  const id = newCommandId();
  const first = await client.send(orderId, "CreateOrder", { customerId: "c-1" }, { id });
  const again = await client.send(orderId, "CreateOrder", { customerId: "c-1" }, { id });
  assert.deepEqual(again, first);
  assert.deepEqual(await client.awaitResult(id), first);
  assert.equal((await client.events(orderId)).length, 1);
});

test("rejections carry the wire code and change nothing", async () => {
  const orderId = `ord-${run}-3`;
  await client.send(orderId, "CreateOrder", { customerId: "c-1", items: [{ productId: "p", quantity: 1, unitPriceCents: 500 }] });
  await client.send(orderId, "SubmitOrder");
  for (const [type, data, code] of [
    ["PayOrder", { paymentId: "pay-1", amountCents: 1, method: "card" }, "invalid_state"],
    ["AddItem", { productId: "p", qty: 1 }, "invalid_command"],
    ["Refund", {}, "unknown_command"],
  ]) {
    await assert.rejects(client.send(orderId, type, data), (err) => {
      assert.ok(err instanceof RejectedError, String(err));
      assert.equal(err.code, code);
      assert.ok(err.result.error.message.length > 0);
      return true;
    });
  }
  await assert.rejects(client.send(`ord-${run}-never`, "SubmitOrder"), { name: "RejectedError", code: "not_found" });
  assert.equal((await client.events(orderId)).length, 3);
});

test("invalid ids never reach a subject", async () => {
  for (const id of ["*", ">", "a.b", "a b", "", "x".repeat(129)]) {
    await assert.rejects(client.send(id, "SubmitOrder"), InvalidIdError);
    await assert.rejects(client.send("ord-1", "SubmitOrder", {}, { id }), InvalidIdError);
    await assert.rejects(client.awaitResult(id), InvalidIdError);
    await assert.rejects(client.events(id), InvalidIdError);
  }
});

test("partition is FNV-1a 32 modulo the count, as in Go", () => {
  // Computed with contract.Partition.
  for (const [id, p16, p1024] of [["ord-1", 2, 434], ["a", 12, 300], ["ORD_2", 13, 1005], ["-", 8, 56], ["z".repeat(64), 5, 965]]) {
    assert.equal(partition(id, 16), p16, id);
    assert.equal(partition(id, 1024), p1024, id);
  }
});

test("events stored at schema version 1 read as version 2", async () => {
  // An order shipped before OrderShipped's schema version 2, stored as the
  // aggregator of that time did.
  const orderId = `ord-${run}-v1`;
  const js = jetstream(nc);
  const timestamp = new Date().toISOString().replace("Z", "000Z");
  let last = 0;
  for (const [version, type, data] of [
    [1, "OrderCreated", { customerId: "c-1", currency: "EUR" }],
    [2, "ItemAdded", { productId: "p", quantity: 1, unitPriceCents: 300 }],
    [3, "OrderSubmitted", { totalCents: 300, itemCount: 1 }],
    [4, "OrderPaid", { paymentId: "pay-1", amountCents: 300, method: "card" }],
    [5, "OrderShipped", { trackingNumber: "1Z999", carrier: "UPS" }],
  ]) {
    const id = `evt-${run}-${version}`;
    const event = { id, aggregateType: "order", aggregateId: orderId, type, schemaVersion: 1, version, data, metadata: { timestamp } };
    const ack = await js.publish(subjects.event(orderId), JSON.stringify(event), { msgID: id, expect: { lastSubjectSequence: last } });
    last = ack.seq;
  }

  const shipped = (await client.events(orderId))[4];
  assert.equal(shipped.schemaVersion, 2);
  assert.deepEqual(shipped.data, { shipment: { trackingNumber: "1Z999", carrier: "UPS" } });
  // The aggregator loads it too: only a shipped order can be delivered.
  assert.equal((await client.send(orderId, "DeliverOrder")).version, 6);

  assert.equal(schemaVersion("OrderShipped"), 2);
  assert.equal(schemaVersion("OrderCreated"), 1);
  const current = { id: "e", type: "OrderShipped", schemaVersion: 2, data: shipped.data };
  assert.deepEqual(upcast(current), current);
  assert.throws(() => upcast({ ...current, schemaVersion: 3 }), /schema version 3/);
});
