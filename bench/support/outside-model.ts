import { FakeAnthropic, type FakeTurn } from '../../test/support/fake-anthropic';
import { TestPeerHost } from '../../test/support/network-peer';
import { TimestampingProxy } from './timestamping-proxy';

/** Not a credential: the fake accepts anything. */
export const FAKE_API_KEY = 'sk-ant-benchmark-fake-key';
export const PROMPT = 'Reply with a short paragraph.';
/** 40 text deltas, 10 ms apart (the fake's pacing), plus the message's framing events. */
export const DELTAS_PER_REPLY = 40;
export const REPLY: FakeTurn = { content: [{ type: 'text', text: 'word '.repeat(DELTAS_PER_REPLY) }] };

/**
 * The fake model as an outside host: sandboxes reach no host address, so a timestamping proxy in
 * front of the fake accepts on a socket made in a network namespace this benchmark creates (veth
 * pair); sandboxes reach it through their NAT, the host and the gateway through the veth.
 */
export async function startOutsideModel(): Promise<{ fake: FakeAnthropic; proxy: TimestampingProxy; stop(): Promise<void> }> {
  const fake = await FakeAnthropic.start({ delayMs: 10, piecesPerBlock: DELTAS_PER_REPLY });
  const peer = await TestPeerHost.start();
  const proxy = await TimestampingProxy.start(fake.url, { socket: await peer.listeningSocket(), address: peer.address });
  return {
    fake,
    proxy,
    async stop() {
      await proxy.stop();
      await peer.stop();
      await fake.stop();
    },
  };
}
