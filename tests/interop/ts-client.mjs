// Interop checks with the official MCP TypeScript SDK client (StreamableHTTPClientTransport)
// against the echo example behind McpSessionLayer.
//
//   node ts-client.mjs http://127.0.0.1:PORT/mcp [--server rmcp]
//
// `--server rmcp` runs the same checks against examples/rmcp_modern.rs (a 2026-07-28
// rmcp handler behind the layer in translation mode): its server name is
// `rmcp-modern`, and since a 2026-07-28 handler cannot push a log message to a GET
// stream, its `notify_me` announces a tool list change through the
// `subscriptions/listen` the layer holds for the session's GET stream, and the check
// is that `notifications/tools/list_changed` arrives there instead. It also checks
// `resources/subscribe` end to end: after subscribing to `test://watched-resource`,
// `update_watched` must bring `notifications/resources/updated` for it to the GET
// stream, and after `resources/unsubscribe` it must not.
//
// Prints one line per check and closes with `N passed, M failed`; exits non-zero on any failure.

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
    CreateMessageRequestSchema,
    ElicitRequestSchema,
    LoggingMessageNotificationSchema,
    ToolListChangedNotificationSchema,
    ResourceUpdatedNotificationSchema,
    LATEST_PROTOCOL_VERSION
} from '@modelcontextprotocol/sdk/types.js';

const url = new URL(process.argv[2] ?? 'http://127.0.0.1:8080/mcp');
const serverArg = process.argv.indexOf('--server');
const rmcp = serverArg > 0 && process.argv[serverArg + 1] === 'rmcp';
const SERVER_NAME = rmcp ? 'rmcp-modern' : 'tower-mcp-session-echo';
const STEP_TIMEOUT_MS = 15_000;

let passed = 0;
let failed = 0;

function check(name, ok, detail = '') {
    if (ok) {
        passed += 1;
        console.log(`ok   ${name}`);
    } else {
        failed += 1;
        console.log(`FAIL ${name}${detail ? `: ${detail}` : ''}`);
    }
    return ok;
}

/** Run one step; an exception counts as a failed check instead of ending the run. */
async function step(name, body) {
    try {
        await withTimeout(body(), STEP_TIMEOUT_MS, name);
    } catch (error) {
        check(name, false, error instanceof Error ? error.message : String(error));
    }
}

function withTimeout(promise, ms, what) {
    let timer;
    const expiry = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    });
    return Promise.race([promise, expiry]).finally(() => clearTimeout(timer));
}

function sleep(ms) {
    return new Promise(resolve => setTimeout(resolve, ms));
}

/** Every HTTP exchange the transport makes, for checks on the wire behaviour. */
const exchanges = [];
const recordingFetch = async (input, init = {}) => {
    const headers = new Headers(init.headers);
    const entry = {
        method: (init.method ?? 'GET').toUpperCase(),
        lastEventId: headers.get('last-event-id'),
        sessionId: headers.get('mcp-session-id'),
        status: undefined,
        contentType: undefined
    };
    exchanges.push(entry);
    const response = await fetch(input, init);
    entry.status = response.status;
    entry.contentType = response.headers.get('content-type');
    return response;
};

const EVENT_ID = /^[0-9a-f]{16}-[0-9]+$/;
const VISIBLE_ASCII = /^[\x21-\x7e]+$/;

const transport = new StreamableHTTPClientTransport(url, {
    fetch: recordingFetch,
    // A short first delay keeps the run quick when the server sends no `retry:`; a
    // server-sent `retry:` overrides it.
    reconnectionOptions: {
        initialReconnectionDelay: 200,
        maxReconnectionDelay: 2000,
        reconnectionDelayGrowFactor: 1.5,
        maxRetries: 3
    }
});
const transportErrors = [];
// Sampling and form elicitation declared, with the SDK filling in schema defaults the
// handler leaves out (what SEP-1034 lets a client do).
const client = new Client(
    { name: 'tower-mcp-session-interop', version: '0.0.0' },
    { capabilities: { sampling: {}, elicitation: { form: { applyDefaults: true } } } }
);
client.onerror = error => transportErrors.push(String(error?.message ?? error));

// The server's requests, as the handlers received them, and the handlers' answers.
const asked = [];
client.setRequestHandler(CreateMessageRequestSchema, request => {
    asked.push(request);
    const prompt = request.params.messages?.[0]?.content?.text;
    return { role: 'assistant', content: { type: 'text', text: `sampled: ${prompt}` }, model: 'interop', stopReason: 'endTurn' };
});
/** What the elicitation handler answers next (set by each step). */
let elicitationAnswer = { action: 'decline' };
client.setRequestHandler(ElicitRequestSchema, request => {
    asked.push(request);
    return elicitationAnswer;
});

/** The JSON after `content=` in a tool's result text (`... action=X, content={..}`). */
function answeredContent(result, lead) {
    const text = result.content?.[0]?.text ?? '';
    const match = text.match(/^(.*): action=(\w+), content=(.*)$/s);
    if (!match || match[1] !== lead) return { action: undefined, content: undefined, text };
    return { action: match[2], content: JSON.parse(match[3]), text };
}

function deepEqual(a, b) {
    return JSON.stringify(sortKeys(a)) === JSON.stringify(sortKeys(b));
}

function sortKeys(value) {
    if (Array.isArray(value)) return value.map(sortKeys);
    if (value && typeof value === 'object') {
        return Object.fromEntries(Object.keys(value).sort().map(k => [k, sortKeys(value[k])]));
    }
    return value;
}

const notifications = [];
let notificationWaiter;
client.setNotificationHandler(rmcp ? ToolListChangedNotificationSchema : LoggingMessageNotificationSchema, notification => {
    notifications.push(notification);
    notificationWaiter?.();
});

let sessionId;

await step('initialize', async () => {
    await client.connect(transport);
    sessionId = transport.sessionId;
    check('initialize: session id issued', typeof sessionId === 'string' && VISIBLE_ASCII.test(sessionId), `got ${sessionId}`);
    check(
        'initialize: protocol version negotiated',
        transport.protocolVersion === LATEST_PROTOCOL_VERSION,
        `got ${transport.protocolVersion}, wanted ${LATEST_PROTOCOL_VERSION}`
    );
    check('initialize: server info', client.getServerVersion()?.name === SERVER_NAME, JSON.stringify(client.getServerVersion()));
});

await step('GET stream opened after initialized', async () => {
    // The transport opens the standalone GET stream once `notifications/initialized` got 202.
    for (let i = 0; i < 50 && !exchanges.some(e => e.method === 'GET' && e.status !== undefined); i++) {
        await sleep(20);
    }
    const get = exchanges.find(e => e.method === 'GET');
    check(
        'GET stream opened after initialized',
        get?.status === 200 && get.contentType?.startsWith('text/event-stream') && get.sessionId === sessionId,
        JSON.stringify(get)
    );
});

await step('tools/list', async () => {
    const { tools } = await client.listTools();
    const names = tools.map(t => t.name).sort();
    const wanted = ['echo', 'notify_me', 'test_reconnection', 'test_tool_with_progress'];
    check('tools/list', wanted.every(n => names.includes(n)), `got ${names.join(', ')}`);
});

await step('tools/call echo', async () => {
    const result = await client.callTool({ name: 'echo', arguments: { message: 'hello, layer' } });
    check('tools/call echo', result.content?.[0]?.text === 'hello, layer' && !result.isError, JSON.stringify(result));
});

await step('notification pushed on the GET stream', async () => {
    const arrived = new Promise(resolve => {
        notificationWaiter = resolve;
    });
    if (notifications.length > 0) notificationWaiter();
    const result = await client.callTool({ name: 'notify_me', arguments: {} });
    check('notify_me accepted by the server', !result.isError, JSON.stringify(result));
    await withTimeout(arrived, 5000, 'notification on the GET stream');
    const note = notifications[0];
    const wanted = rmcp ? note?.method === 'notifications/tools/list_changed' : note?.params?.data === 'hello from notify_me';
    check('notification pushed on the GET stream', wanted, JSON.stringify(note));
});

if (rmcp) {
    await step('resources/subscribe: update on the GET stream', async () => {
        const updates = [];
        let waiter;
        client.setNotificationHandler(ResourceUpdatedNotificationSchema, n => {
            updates.push(n);
            waiter?.();
        });
        await client.subscribeResource({ uri: 'test://watched-resource' });
        const arrived = new Promise(resolve => (waiter = resolve));
        const result = await client.callTool({ name: 'update_watched', arguments: {} });
        check('update_watched accepted by the server', !result.isError, JSON.stringify(result));
        await withTimeout(arrived, 5000, 'resources/updated on the GET stream');
        check(
            'resources/updated for the subscribed URI',
            updates.length === 1 && updates[0].params?.uri === 'test://watched-resource',
            JSON.stringify(updates)
        );
        await client.unsubscribeResource({ uri: 'test://watched-resource' });
        await client.callTool({ name: 'update_watched', arguments: {} });
        await sleep(500);
        check('no resources/updated after unsubscribe', updates.length === 1, JSON.stringify(updates));
    });
}

await step('resume after a forced disconnect', async () => {
    const tokens = [];
    const before = exchanges.length;
    const result = await client.callTool({ name: 'test_reconnection', arguments: {} }, undefined, {
        onresumptiontoken: token => tokens.push(token)
    });
    check(
        'resume after a forced disconnect: result delivered',
        result.content?.[0]?.text === 'reconnection test complete',
        JSON.stringify(result)
    );
    const post = exchanges.slice(before).find(e => e.method === 'POST');
    check('resume: POST answered as SSE', post?.contentType?.startsWith('text/event-stream'), JSON.stringify(post));
    const resume = exchanges.slice(before).find(e => e.method === 'GET' && e.lastEventId);
    check('resume: GET with Last-Event-ID answered 200', resume?.status === 200, JSON.stringify(resume));
    check(
        'resume: Last-Event-ID is the priming event id',
        resume !== undefined && tokens.length > 0 && resume.lastEventId === tokens[0],
        `tokens ${JSON.stringify(tokens)}, resumed with ${resume?.lastEventId}`
    );
    check('resume: event ids are {stream}-{seq}', tokens.length > 0 && tokens.every(t => EVENT_ID.test(t)), JSON.stringify(tokens));
});

await step('progress notifications', async () => {
    const progress = [];
    const result = await client.callTool({ name: 'test_tool_with_progress', arguments: {} }, undefined, {
        onprogress: p => progress.push(p.progress)
    });
    check('progress: result delivered', result.content?.[0]?.text === 'progress complete', JSON.stringify(result));
    check('progress: 0, 50, 100 reported', JSON.stringify(progress) === '[0,50,100]', JSON.stringify(progress));
});

await step('sampling: test_sampling', async () => {
    asked.length = 0;
    const result = await client.callTool({ name: 'test_sampling', arguments: { prompt: 'what is 2+2?' } });
    check('sampling: the handler got the prompt', asked[0]?.params?.messages?.[0]?.content?.text === 'what is 2+2?', JSON.stringify(asked));
    check(
        'sampling: the tool returned the sample',
        result.content?.[0]?.text === 'LLM response: sampled: what is 2+2?' && !result.isError,
        JSON.stringify(result)
    );
});

await step('elicitation: test_elicitation', async () => {
    asked.length = 0;
    const given = { username: 'interop', email: 'interop@example.com' };
    elicitationAnswer = { action: 'accept', content: given };
    const result = await client.callTool({ name: 'test_elicitation', arguments: { message: 'Who are you?' } });
    check('elicitation: the handler got the message', asked[0]?.params?.message === 'Who are you?', JSON.stringify(asked));
    const { action, content, text } = answeredContent(result, 'User response');
    check('elicitation: the tool returned the answer', action === 'accept' && deepEqual(content, given) && !result.isError, text);

    elicitationAnswer = { action: 'decline' };
    const declined = answeredContent(
        await client.callTool({ name: 'test_elicitation', arguments: { message: 'Again?' } }),
        'User response'
    );
    check('elicitation: a decline comes back without content', declined.action === 'decline' && declined.content === null, declined.text);
});

await step('elicitation: SEP-1034 defaults', async () => {
    asked.length = 0;
    // Accept without filling anything in: the SDK applies the schema's defaults.
    elicitationAnswer = { action: 'accept', content: {} };
    const result = await client.callTool({ name: 'test_elicitation_sep1034_defaults', arguments: {} });
    const properties = asked[0]?.params?.requestedSchema?.properties ?? {};
    const defaults = Object.fromEntries(Object.entries(properties).map(([k, v]) => [k, v.default]));
    const wanted = { name: 'John Doe', age: 30, score: 95.5, status: 'active', verified: true };
    check('sep1034: every field carries its default', deepEqual(defaults, wanted), JSON.stringify(properties));
    check(
        'sep1034: field types',
        properties.name?.type === 'string' && properties.age?.type === 'integer' && properties.score?.type === 'number' &&
            properties.verified?.type === 'boolean' && JSON.stringify(properties.status?.enum) === '["active","inactive","pending"]',
        JSON.stringify(properties)
    );
    const { action, content, text } = answeredContent(result, 'Elicitation completed');
    check('sep1034: the tool got the defaults back', action === 'accept' && deepEqual(content, wanted) && !result.isError, text);
});

await step('elicitation: SEP-1330 enums', async () => {
    asked.length = 0;
    const picks = {
        untitledSingle: 'option2',
        titledSingle: 'value3',
        legacyEnum: 'opt1',
        untitledMulti: ['option1', 'option3'],
        titledMulti: ['value2']
    };
    elicitationAnswer = { action: 'accept', content: picks };
    const result = await client.callTool({ name: 'test_elicitation_sep1330_enums', arguments: {} });
    const p = asked[0]?.params?.requestedSchema?.properties ?? {};
    const titled = list => Array.isArray(list) && list.length === 3 && list.every(o => typeof o.const === 'string' && typeof o.title === 'string');
    check(
        'sep1330: the five enum shapes arrived',
        Array.isArray(p.untitledSingle?.enum) &&
            titled(p.titledSingle?.oneOf) &&
            p.legacyEnum?.enumNames?.length === p.legacyEnum?.enum?.length &&
            p.untitledMulti?.type === 'array' &&
            Array.isArray(p.untitledMulti?.items?.enum) &&
            p.titledMulti?.type === 'array' &&
            titled(p.titledMulti?.items?.anyOf),
        JSON.stringify(p)
    );
    const { action, content, text } = answeredContent(result, 'Elicitation completed');
    check('sep1330: the tool got the picks back', action === 'accept' && deepEqual(content, picks) && !result.isError, text);
});

await step('DELETE terminates the session', async () => {
    await transport.terminateSession();
    const del = exchanges.find(e => e.method === 'DELETE');
    check('DELETE terminates the session', del?.status >= 200 && del.status < 300 && del.sessionId === sessionId, JSON.stringify(del));
    check('client forgot the session id', transport.sessionId === undefined, `still ${transport.sessionId}`);
});

await step('old session id answered 404', async () => {
    const response = await fetch(url, {
        method: 'POST',
        headers: {
            'content-type': 'application/json',
            accept: 'application/json, text/event-stream',
            'mcp-session-id': sessionId,
            'mcp-protocol-version': LATEST_PROTOCOL_VERSION
        },
        body: JSON.stringify({ jsonrpc: '2.0', id: 99, method: 'tools/list', params: {} })
    });
    const text = await response.text();
    check('old session id answered 404', response.status === 404, `status ${response.status}, body ${text}`);
});

await client.close().catch(() => {});

await step('re-initialize gets a new session', async () => {
    const second = new StreamableHTTPClientTransport(url);
    const again = new Client({ name: 'tower-mcp-session-interop', version: '0.0.0' }, { capabilities: {} });
    await again.connect(second);
    check(
        're-initialize gets a new session',
        typeof second.sessionId === 'string' && second.sessionId !== sessionId,
        `old ${sessionId}, new ${second.sessionId}`
    );
    const result = await again.callTool({ name: 'echo', arguments: { message: 'again' } });
    check('new session serves calls', result.content?.[0]?.text === 'again', JSON.stringify(result));
    await second.terminateSession();
    await again.close();
});

if (failed > 0 && transportErrors.length > 0) {
    console.log(`transport errors seen: ${transportErrors.slice(0, 5).join(' | ')}`);
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
