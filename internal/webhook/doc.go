// Package webhook verifies the CRM vendors' webhook deliveries and parses them into one Event
// shape for the inbox (issue 19; ../shared/API-CONTRACTS.md §6). The verifiers and parsers
// take a request's headers and raw body; the endpoint (Handler, server.go) runs them, stores
// each verified event in the warehouse's webhook_inbox (sink.Inbox), and only then answers.
//
// The rules, each from the document cited where it is applied:
//
//   - Every check runs on the request's bytes as received, never on JSON decoded and encoded
//     again: a signature covers bytes, and re-serializing changes them.
//   - LeadConnector: the Ed25519 X-GHL-Signature first; the RSA-SHA256 X-WH-Signature only
//     when X-GHL-Signature is absent, never after it failed. Then the body's timestamp must be
//     within MaxSkew (5 minutes) of now, either way, and its webhookId must not have been
//     accepted before (ReplayChecker).
//   - LACRM: a request with X-Hook-Secret is the handshake (LACRMHandshake); every other
//     delivery carries X-Hook-Signature, the HMAC-SHA256 of the body keyed with that secret,
//     compared with hmac.Equal.
//   - LocaliQ: no signature; the delivery carries as its Authorization header the value
//     leadsync registered with the hook (NewLocaliQAuthorization), compared in constant time.
//   - A rejection is an *Error whose Reason is a metric label; answer it 4xx and write
//     nothing. Any other error (the replay store failing) is not the sender's fault: answer
//     429, the one status HighLevel retries.
//   - A verified event of a type this package does not know parses to Op "ignore" with its
//     type kept, never to an error (which would be answered 4xx, and LACRM and LocaliQ disable
//     hooks that keep failing).
//   - Bodies are bounded: MaxBodyBytes, and MaxDepth levels of nested objects and arrays.
//
// The signing helpers (SignGHL, SignLACRM, GenerateSandboxKeyPair) are for the sandbox
// vendors, which sign their deliveries the way the real ones do.
package webhook
