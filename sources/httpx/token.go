package httpx

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// TokenStyle is one vendor's flavour of the OAuth 2.0 token endpoint (RFC 6749 §4.1.3, §6):
// how the request is written and how its answer and refusals read. Token is the one token
// call of every vendor; what differs between them is said here.
type TokenStyle struct {
	// JSON sends the parameters as a JSON object (LocaliQ, LACRM); false: an HTML form.
	JSON bool
	// Rename spells a parameter the vendor's way (LeadConnector v3: camelCase); nil: the
	// snake_case names of RFC 6749 as given.
	Rename func(name string) string
	// BasicAuth sends the client credentials in an Authorization: Basic header (LACRM);
	// false: as client_id and client_secret parameters.
	BasicAuth bool
	// Header is added to every token request (LeadConnector's Version).
	Header http.Header
	// Endpoint names the call in errors and metrics; default "oauth/token".
	Endpoint string
	// Bucket is the client's rate-limit bucket for token calls.
	Bucket string
	// Extras are the answer's fields kept on the token as extras (strings), beyond the
	// standard ones: the token store persists them (LeadConnector's companyId).
	Extras []string
	// IssuedAt names a field with the server's issue time in Unix seconds (LocaliQ's
	// created_at): the expiry then follows the server's clock.
	IssuedAt string
	// Subject, when the answer does not name who granted access, is kept as the token's
	// "subject" extra: the token store shows it (LocaliQ's business user).
	Subject string
	// Refusal classifies a final non-2xx answer before the default does: an
	// *oauth2.RetrieveError for a refusal (invalid_grant: the grant needs a new login),
	// another error for a failure that may pass, nil for the default. The default: a 4xx
	// other than 408 and 429 whose message starts with an OAuth error code
	// ("invalid_grant: ...") is an *oauth2.RetrieveError with that code; anything else is
	// the *Error itself (transient, the refresh token kept).
	Refusal func(e *Error) error
}

var oauthErrorCode = regexp.MustCompile(`^[a-z_]+$`)

// Token posts one token request with grant and params, exactly once: it is never re-sent,
// because refresh tokens and authorization codes are single-use. The answer may use the
// snake_case or camelCase field names, and give expires_in as a number or a numeric
// string; the expiry is now (c's clock, or the IssuedAt field) plus expires_in.
func (c *Client) Token(ctx context.Context, style TokenStyle, tokenURL, clientID, clientSecret string, params map[string]string) (*oauth2.Token, error) {
	name := func(k string) string {
		if style.Rename != nil {
			return style.Rename(k)
		}
		return k
	}
	values := map[string]string{}
	for k, v := range params {
		values[name(k)] = v
	}
	header := http.Header{}
	for k, vs := range style.Header {
		header[k] = append([]string(nil), vs...)
	}
	if style.BasicAuth {
		// The id and secret joined by a colon, as LACRM reads them (not form-encoded first).
		creds := clientID + ":" + clientSecret
		header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(creds)))
	} else {
		values[name("client_id")], values[name("client_secret")] = clientID, clientSecret
	}
	req := Request{Method: http.MethodPost, Path: tokenURL, Header: header, Bucket: style.Bucket, NoRetry: true,
		Endpoint: style.Endpoint}
	if req.Endpoint == "" {
		req.Endpoint = "oauth/token"
	}
	if style.JSON {
		b, err := json.Marshal(values)
		if err != nil {
			return nil, err
		}
		req.Body, req.ContentType = b, "application/json"
	} else {
		form := url.Values{}
		for k, v := range values {
			form.Set(k, v)
		}
		req.Body, req.ContentType = []byte(form.Encode()), "application/x-www-form-urlencoded"
	}
	resp, err := c.Do(ctx, req)
	if err != nil {
		var he *Error
		if !errors.As(err, &he) {
			return nil, err
		}
		if style.Refusal != nil {
			if rerr := style.Refusal(he); rerr != nil {
				return nil, rerr
			}
		}
		if he.Status >= 400 && he.Status < 500 && he.Status != http.StatusTooManyRequests && he.Status != http.StatusRequestTimeout {
			// httpx renders an OAuth error body as "code: description".
			if code, desc, _ := strings.Cut(he.Message, ": "); oauthErrorCode.MatchString(code) {
				return nil, Refused(he.Status, code, desc)
			}
		}
		return nil, err
	}
	return ParseToken(resp.Body, c.cfg.Clock(), style)
}

// TokenFailure prefixes an error of Token that is not a refusal with what ("localiq:
// refresh"); a refusal (*oauth2.RetrieveError) stays as it is, for the token store to read.
func TokenFailure(err error, what string) error {
	var refused *oauth2.RetrieveError
	if err == nil || errors.As(err, &refused) {
		return err
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Refused is the *oauth2.RetrieveError of a refusal with HTTP status status.
func Refused(status int, code, description string) *oauth2.RetrieveError {
	return &oauth2.RetrieveError{ErrorCode: code, ErrorDescription: description,
		Response: &http.Response{StatusCode: status, Status: strconv.Itoa(status) + " " + http.StatusText(status)}}
}

// ParseToken reads a token answer (a token endpoint's, or LeadConnector's minted location
// token): access_token/accessToken (required), refresh_token/refreshToken,
// token_type/tokenType (default Bearer), expires_in/expiresIn, and style's Extras and
// IssuedAt. now is when the answer arrived.
func ParseToken(body []byte, now time.Time, style TokenStyle) (*oauth2.Token, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return nil, fmt.Errorf("decode token response: %w", err)
	}
	text := func(names ...string) string {
		for _, n := range names {
			if s, ok := scalarText(fields[n]); ok && s != "" {
				return s
			}
		}
		return ""
	}
	tok := &oauth2.Token{
		AccessToken:  text("access_token", "accessToken"),
		RefreshToken: text("refresh_token", "refreshToken"),
		TokenType:    text("token_type", "tokenType"),
	}
	if tok.AccessToken == "" {
		return nil, errors.New("token response has no access token")
	}
	if tok.TokenType == "" {
		tok.TokenType = "Bearer"
	}
	extra := map[string]any{}
	if secs, ok := positiveSeconds(text("expires_in", "expiresIn"), math.MaxInt32); ok {
		issued := now
		if style.IssuedAt != "" {
			if at, ok := positiveSeconds(text(style.IssuedAt), 1<<40); ok {
				issued = time.Unix(at, 0)
			}
		}
		tok.Expiry = issued.Add(time.Duration(secs) * time.Second)
		tok.ExpiresIn = secs
	}
	for _, n := range style.Extras {
		if s := text(n); s != "" {
			extra[n] = s
		}
	}
	if style.Subject != "" {
		extra["subject"] = style.Subject
	}
	return tok.WithExtra(extra), nil
}

// scalarText is a JSON string's value, or a number or boolean as written; false for
// anything else (null, objects, arrays).
func scalarText(raw json.RawMessage) (string, bool) {
	raw = json.RawMessage(strings.TrimSpace(string(raw)))
	if len(raw) == 0 {
		return "", false
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "", false
		}
		return s, true
	case 't', 'f':
		return string(raw), string(raw) == "true" || string(raw) == "false"
	case 'n', '{', '[':
		return "", false
	}
	var n json.Number
	if json.Unmarshal(raw, &n) != nil {
		return "", false
	}
	return n.String(), true
}

// positiveSeconds reads a whole number of seconds from 1 to max (a fraction is cut off).
func positiveSeconds(s string, max float64) (int64, bool) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 1 || math.IsNaN(f) || f > max {
		return 0, false
	}
	return int64(f), true
}
