package aggregator

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/jetsource/jetsource/contract"
)

// untypedGroup is the queue group of the replicas' untyped-command
// subscriptions: one replica answers each message.
const untypedGroup = "jetsource-aggregator"

// answerUntyped subscribes to command subjects without the type token. No
// stream takes them, so without this the server drops such a message and a
// sender that does not wait for an acknowledgement never learns why. It
// logs and counts each one and answers a request with a JetStream API
// error, which a JetStream publisher reports and `nats req` prints.
func (s *Service) answerUntyped() (*nats.Subscription, error) {
	sub, err := s.js.Conn().QueueSubscribe(contract.UntypedCommandSubjects, untypedGroup, func(m *nats.Msg) {
		s.cfg.Observer.UntypedCommand()
		s.cfg.Logger.Warn("command without a type token: not stored", "subject", m.Subject,
			"command_id", m.Header.Get(contract.HeaderMsgID))
		if m.Reply == "" {
			return
		}
		if err := m.Respond(untypedReply(m.Subject)); err != nil {
			s.cfg.Logger.Debug("answer untyped command", "subject", m.Subject, "error", err)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", contract.UntypedCommandSubjects, err)
	}
	return sub, nil
}

// untypedReply is the error body for a command published on subject
// without its type token, in the shape of a JetStream API error.
func untypedReply(subject string) []byte {
	type apiError struct {
		Code        int    `json:"code"`
		Description string `json:"description"`
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // the description shows <orderId>
	_ = enc.Encode(struct {
		Error apiError `json:"error"`
	}{apiError{Code: 400, Description: subject + " has no command type, so nothing was stored: publish to " +
		contract.CommandsPrefix + "<orderId>.<CommandType>"}})
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}
