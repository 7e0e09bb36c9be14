// Prompt-prefix affinity key for the nginx upstream hash (njs).
//
// The key is the first PREFIX_BYTES bytes (UTF-8) of the prompt: the "prompt" string of
// /v1/completions, or the chat messages of /v1/chat/completions joined as "role\ncontent\n".
// Requests whose prompts share that first block hash to the same replica, whose prefix cache
// then holds the shared prompt blocks. Bodies that are not JSON, or carry no prompt, get the
// request id (random): they spread evenly over the replicas.
//
// The body is read by the proxy module before the upstream is chosen; it is in memory as long
// as it fits client_body_buffer_size (set to the largest accepted body in nginx.conf.in).

var PREFIX_BYTES = 256;

function contentText(content) {
    if (typeof content === 'string') return content;
    if (!Array.isArray(content)) return '';
    var s = '';
    for (var i = 0; i < content.length; i++) {
        var part = content[i];
        if (part && typeof part.text === 'string') s += part.text;
    }
    return s;
}

function promptText(req) {
    if (req === null || typeof req !== 'object') return null;
    var p = req.prompt;
    if (typeof p === 'string') return p;
    if (Array.isArray(p) && p.length > 0) {
        if (typeof p[0] === 'string') return p[0];
        // token ids: their decimal text is a stable stand-in for the prompt bytes
        return p.slice(0, PREFIX_BYTES).join(',');
    }
    var m = req.messages;
    if (Array.isArray(m) && m.length > 0) {
        var s = '';
        for (var i = 0; i < m.length && s.length < PREFIX_BYTES; i++) {
            var msg = m[i];
            if (msg === null || typeof msg !== 'object') continue;
            s += String(msg.role) + '\n' + contentText(msg.content) + '\n';
        }
        return s;
    }
    return null;
}

function key(r) {
    var body;
    try {
        body = r.requestText;
    } catch (e) {
        body = undefined;  // the body went to a temporary file
    }
    if (typeof body === 'string' && body.length > 0) {
        var text = null;
        try {
            text = promptText(JSON.parse(body));
        } catch (e) {
            text = null;
        }
        if (text !== null && text.length > 0) {
            return Buffer.from(text).slice(0, PREFIX_BYTES).toString('hex');
        }
    }
    return r.variables.request_id;
}

export default {key};
