/**
 * The user's SSH agent: it holds no keys, refuses every other request, and reads what a client
 * sends to a bound (the client is the package).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { agentAnswers, RUNTIME_DIR, SSH_AGENT_SOCKET } from '../../../src/agent/ssh-agent.js';
import { PACKAGE_UID } from '../../../src/agent/step.js';

const frame = (...body: number[]) => Buffer.from([0, 0, 0, body.length, ...body]);

describe('the SSH agent', () => {
  it('lists no identities and refuses the rest, frame by frame, whatever the reads', () => {
    const request = Buffer.concat([frame(11), frame(13, 1, 2, 3), frame(17), frame()]);
    const whole = agentAnswers(request);
    assert.ok(whole);
    assert.deepEqual(
      whole.answers.map((a) => a.toString('hex')),
      ['000000050c00000000', '0000000105', '0000000105', '0000000105'],
    );
    assert.equal(whole.rest.length, 0);
    // The same bytes split anywhere give the same answers.
    for (let cut = 1; cut < request.length; cut++) {
      const a = agentAnswers(request.subarray(0, cut));
      assert.ok(a);
      const b = agentAnswers(Buffer.concat([a.rest, request.subarray(cut)]));
      assert.ok(b);
      assert.equal(a.answers.length + b.answers.length, 4, `cut at ${cut}`);
    }
  });

  it('a frame longer than the bound ends the connection; the paths are the user’s', () => {
    assert.equal(agentAnswers(Buffer.from([0, 0, 0x40, 1, 11])), undefined);
    assert.ok(agentAnswers(Buffer.from([0, 0, 0x40, 0, 11])), 'a frame of 16 KiB is read');
    assert.deepEqual(agentAnswers(Buffer.from([0, 0, 1]))?.answers, []);
    assert.equal(RUNTIME_DIR, `/run/user/${PACKAGE_UID}`);
    assert.ok(SSH_AGENT_SOCKET.startsWith(`${RUNTIME_DIR}/`));
  });
});
