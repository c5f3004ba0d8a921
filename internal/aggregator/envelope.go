package aggregator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/order"
)

// maxMetadataLength bounds the free-text metadata fields.
const maxMetadataLength = 256

// incoming is a command message after parsing: what could be read of it and
// why it is invalid, if it is.
type incoming struct {
	env contract.CommandEnvelope
	cmd order.Command
	// resultSubject is where the outcome goes: the command id's subject, or
	// for a message without a usable id, one named by its stream sequence.
	resultSubject string
	// commandID is the usable command id, empty if there is none.
	commandID string
	// err is the rejection: order.ErrInvalidCommand or ErrUnknownCommand.
	err error
}

// parse reads a stored command message. It never fails: a bad message comes
// back with err set, so it can be rejected with a result.
func parse(subject string, header map[string][]string, body []byte, sequence uint64) incoming {
	in := incoming{resultSubject: contract.UnaddressableResultSubject(sequence)}
	headerID := ""
	if v := header[contract.HeaderMsgID]; len(v) > 0 {
		headerID = v[0]
	}
	// Until the body is read, the header is the best guess at the id.
	if order.ValidateID("id", headerID) == nil {
		in.commandID, in.resultSubject = headerID, contract.ResultSubject(headerID)
	}
	in.err = in.read(subject, headerID, body)
	return in
}

func (in *incoming) read(subject, headerID string, body []byte) error {
	if len(body) > contract.MaxBodyBytes {
		return invalid("body is %d bytes; the limit is %d", len(body), contract.MaxBodyBytes)
	}
	if !utf8.Valid(body) {
		return invalid("body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in.env); err != nil {
		return invalid("body is not a command envelope: %v", err)
	}
	if dec.More() {
		return invalid("body has trailing content after the JSON object")
	}
	env := in.env
	if err := order.ValidateID("id", env.ID); err != nil {
		return err
	}
	// The header is the id JetStream deduplicated the message by, so a
	// mismatch is reported under the header's id.
	if headerID != "" && headerID != env.ID {
		return invalid("header %s is %q but the body's id is %q", contract.HeaderMsgID, headerID, env.ID)
	}
	in.commandID, in.resultSubject = env.ID, contract.ResultSubject(env.ID)
	_, subjectOrder, subjectType, ok := contract.ParseStoredCommandSubject(subject)
	if !ok {
		return invalid("subject %q is not orders.commands.<orderId>.<CommandType>", subject)
	}
	if err := order.ValidateID("orderId", env.OrderID); err != nil {
		return err
	}
	if env.OrderID != subjectOrder {
		return invalid("orderId %q does not match the subject's order id %q", env.OrderID, subjectOrder)
	}
	if env.Type != subjectType {
		return invalid("type %q does not match the subject's command type %q", env.Type, subjectType)
	}
	if err := validateMetadata("metadata.userId", env.Metadata.UserID); err != nil {
		return err
	}
	if err := validateMetadata("metadata.correlationId", env.Metadata.CorrelationID); err != nil {
		return err
	}
	cmd, err := order.ParseCommand(env.Type, env.Data)
	if err != nil {
		if errors.Is(err, order.ErrInvalidCommand) {
			return fmt.Errorf("data: %w", err)
		}
		return err
	}
	in.cmd = cmd
	return nil
}

func validateMetadata(field, v string) error {
	if utf8.RuneCountInString(v) > maxMetadataLength {
		return &order.FieldError{Field: field, Reason: fmt.Sprintf("is longer than %d characters", maxMetadataLength)}
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f {
			return &order.FieldError{Field: field, Reason: fmt.Sprintf("contains control character %U", r)}
		}
	}
	return nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", order.ErrInvalidCommand, fmt.Sprintf(format, args...))
}
