import { Box, Text, useApp, useInput } from 'ink';
import { useRef, useState } from 'react';
import type { ChatAgent, TurnHooks, TurnSummary } from '../chat/loop.js';
import { isSlashCommand, runSlashCommand, type SlashContext } from '../chat/slash-commands.js';
import { StatusLine } from './StatusLine.js';
import { ToolPanel } from './ToolPanel.js';
import { applyEvent, itemsFromMessages, type TranscriptItem } from './transcript.js';

export interface ChatAppProps {
  agent: ChatAgent;
  /** Shown in the status line. */
  model: string;
  /** --yes: tools run without asking. */
  approveAll: boolean;
  /** /save and /load. */
  session: Omit<SlashContext, 'agent'>;
}

/**
 * The interactive chat: the transcript (tokens stream into the last reply, tool calls are
 * panels), the input (Enter sends; a line ending in \ continues), and the status line.
 * Ctrl+C stops a reply; at an empty prompt, pressed twice, it leaves.
 */
export function ChatApp({ agent, model, approveAll, session }: ChatAppProps) {
  const { exit } = useApp();
  const [items, setItems] = useState<TranscriptItem[]>(() => itemsFromMessages(agent.conversation.messages));
  const [input, setInputState] = useState('');
  const [busy, setBusyState] = useState(false);
  const [awaitingApproval, setAwaitingState] = useState(false);
  const [status, setStatus] = useState({ contextTokens: 0, tokensPerSecond: 0 });
  // Key presses can arrive faster than React renders, so what handlers read lives in refs.
  const live = useRef({ input: '', busy: false, approveAll, stop: false, leaveArmed: false, answer: null as ((run: boolean) => void) | null });

  const setInput = (text: string) => {
    live.current.input = text;
    setInputState(text);
  };
  const setBusy = (value: boolean) => {
    live.current.busy = value;
    setBusyState(value);
  };
  const note = (item: TranscriptItem) => setItems((current) => [...current, item]);
  const redraw = (extra: TranscriptItem) => setItems([...itemsFromMessages(agent.conversation.messages), extra]);

  const answerApproval = (run: boolean) => {
    const answer = live.current.answer;
    live.current.answer = null;
    setAwaitingState(false);
    answer?.(run);
  };

  const hooks: TurnHooks = {
    onEvent: (event) => {
      if (event.type === 'progress') {
        setStatus({ contextTokens: event.contextTokens, tokensPerSecond: event.tokensPerSecond });
        return;
      }
      setItems((current) => applyEvent(current, event));
      if (event.type === 'turn_end') setStatus({ contextTokens: event.contextTokens, tokensPerSecond: event.decodeTokensPerSecond });
    },
    approve: () => {
      if (live.current.approveAll) return Promise.resolve(true);
      if (live.current.stop) return Promise.resolve(false);
      return new Promise<boolean>((resolve) => {
        live.current.answer = resolve;
        setAwaitingState(true);
      });
    },
    shouldStop: () => live.current.stop,
  };

  const runTurn = (turn: (hooks: TurnHooks) => Promise<TurnSummary>) => {
    live.current.stop = false;
    setBusy(true);
    turn(hooks)
      .catch((error: Error) => note({ kind: 'error', text: error.message }))
      .finally(() => setBusy(false));
  };

  const submit = (text: string) => {
    if (!isSlashCommand(text)) {
      note({ kind: 'user', text });
      runTurn((turnHooks) => agent.send(text, turnHooks));
      return;
    }
    try {
      const outcome = runSlashCommand(text, { agent, ...session });
      if (outcome.kind === 'exit') exit();
      else if (outcome.kind === 'regen') {
        setItems(itemsFromMessages(agent.conversation.messages));
        runTurn((turnHooks) => agent.respond(turnHooks));
      } else redraw({ kind: 'info', text: outcome.text });
    } catch (error) {
      note({ kind: 'error', text: (error as Error).message });
    }
  };

  useInput((char, key) => {
    const state = live.current;
    if (key.ctrl && char === 'c') {
      if (state.busy) {
        state.stop = true;
        if (state.answer) answerApproval(false);
      } else if (state.input !== '') setInput('');
      else if (state.leaveArmed) exit();
      else {
        state.leaveArmed = true;
        note({ kind: 'info', text: 'Ctrl+C again (or /exit) to leave' });
      }
      return;
    }
    state.leaveArmed = false;
    if (state.answer) {
      if (char === 'a') state.approveAll = true;
      if (char === 'y' || char === 'a') answerApproval(true);
      else if (char === 'n') answerApproval(false);
      return;
    }
    if (state.busy) return;
    if (key.return) {
      if (state.input.endsWith('\\')) setInput(`${state.input.slice(0, -1)}\n`);
      else {
        const text = state.input.trim();
        setInput('');
        if (text !== '') submit(text);
      }
    } else if (key.backspace || key.delete) setInput(state.input.slice(0, -1));
    else if (!key.ctrl && !key.meta && !key.escape && !key.tab && !key.upArrow && !key.downArrow && !key.leftArrow && !key.rightArrow) {
      setInput(state.input + char.replace(/\r\n?/g, '\n'));
    }
  });

  return (
    <Box flexDirection="column">
      {items.map((item, index) => <TranscriptLine key={index} item={item} />)}
      {busy || awaitingApproval ? null : (
        <Box>
          <Text color="green">{'> '}</Text>
          <Text>{input}</Text>
          <Text inverse> </Text>
        </Box>
      )}
      <StatusLine model={model} contextTokens={status.contextTokens} contextLength={agent.contextLength} tokensPerSecond={status.tokensPerSecond} busy={busy} />
    </Box>
  );
}

function TranscriptLine({ item }: { item: TranscriptItem }) {
  switch (item.kind) {
    case 'user':
      return <Text color="green">{`> ${item.text}`}</Text>;
    case 'assistant':
      return <Text>{item.text}</Text>;
    case 'tool':
      return <ToolPanel call={item.call} state={item.state} result={item.result} />;
    case 'info':
      return <Text dimColor>{item.text}</Text>;
    case 'error':
      return <Text color="red">{`herd: ${item.text}`}</Text>;
  }
}
